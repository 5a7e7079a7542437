"""Text and chat through the KV-cache service with a stock python3-grpcio client, checked against independent
references: python3-sentencepiece (tokens and text) and python3-jinja2 (the chat template, rendered as Hugging Face
transformers renders it).

Usage: text_client.py TARGET SCENARIO ARGS_JSON; prints one JSON object on its last line.
"""
import json
import math
import os
import sys

import grpc
import sentencepiece as spm
from jinja2.sandbox import ImmutableSandboxedEnvironment
from kvcache.v1 import kvcache_pb2 as pb
from kvcache.v1 import kvcache_pb2_grpc as pb_grpc

GREEDY = pb.SamplingParams(temperature=0.0)


def render(template, messages, bos, eos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos, add_generation_prompt=True)


def decode_text(sp, ids, specials):
    """Text of ids in running text: SentencePiece's decoding after a plain piece, specials left out (vLLM's
    prefix-offset method), an incomplete last character dropped."""
    ids = [i for i in ids if i not in specials]
    anchor = sp.piece_to_id("a")
    return sp.decode([anchor] + ids)[len(sp.decode([anchor])):].rstrip("\ufffd")


def chat(stub, args):
    model_dir = args["model_dir"]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    specials = {int(k) for k in config["added_tokens_decoder"]}
    im_end = sp.piece_to_id("<|im_end|>")
    model = next(m for m in stub.ListModels(pb.ListModelsRequest(), timeout=30).models if m.id == args["model"])
    out = {"tokenizer": model.tokenizer, "chat_template": model.chat_template, "eos": list(model.eos_token_ids)}

    first = [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Hello! Qu'est-ce qu'un cache KV ? 👋"}]
    second = [{"role": "user", "content": "And a second question."}]
    stub.CreateSession(pb.CreateSessionRequest(session_id="chat-a", model=args["model"]), timeout=30)
    turn1 = stub.Append(pb.AppendRequest(session_id="chat-a", messages=[pb.ChatMessage(**m) for m in first], prompt_logprobs=True), timeout=60)
    t1 = [p.token_id for p in turn1.prompt_logprobs]
    out["turn1_first_logprob_is_nan"] = math.isnan(turn1.prompt_logprobs[0].logprob)
    out["turn1_logprobs_ok"] = all(p.logprob <= 0 and math.isfinite(p.logprob) for p in turn1.prompt_logprobs[1:])
    out["turn1_appended"] = turn1.appended_tokens

    events = list(stub.Decode(pb.DecodeRequest(session_id="chat-a", max_tokens=args["max_tokens"], sampling=GREEDY), timeout=120))
    g1 = [e.token_id for e in events]
    streamed = "".join(e.text for e in events)
    out["reply_tokens"] = len(g1)
    out["reply_finish"] = pb.FinishReason.Name(events[-1].finish_reason)
    out["streamed_equals_detokenized"] = streamed == decode_text(sp, g1, specials)
    out["streamed"] = streamed

    turn2 = stub.Append(pb.AppendRequest(session_id="chat-a", messages=[pb.ChatMessage(**m) for m in second], prompt_logprobs=True, top_logprobs=8), timeout=60)
    t2 = [p.token_id for p in turn2.prompt_logprobs]

    # The whole conversation rendered by jinja2, tokenized by sentencepiece around the reply's tokens as generated.
    marker = "\x00REPLY\x00"
    whole = render(config["chat_template"], first + [{"role": "assistant", "content": marker}] + second, "<s>", "</s>")
    prefix, suffix = whole.split(marker)
    reply_suffix = suffix[len("<|im_end|>"):] if g1 and g1[-1] == im_end else suffix  # an ending <|im_end|> is in the reply
    # A run after a special token takes no dummy prefix: tokenize behind a marker and drop the marker's pieces.
    expected = sp.encode(prefix) + g1 + sp.encode("<|im_end|>" + reply_suffix)[2:]
    out["live_equals_rendered"] = t1 + g1 + t2 == expected
    out["live"] = t1 + g1 + t2
    out["rendered"] = expected
    out["position"] = turn2.position

    stub.CreateSession(pb.CreateSessionRequest(session_id="chat-b", model=args["model"]), timeout=30)
    fresh = stub.Append(pb.AppendRequest(session_id="chat-b", token_ids=expected, top_logprobs=8), timeout=60)
    out["fresh_position"] = fresh.position
    out["fresh_top_equals_live"] = [(t.token_id, t.logprob) for t in fresh.top_logprobs] == [(t.token_id, t.logprob) for t in turn2.top_logprobs]

    # A reply that ends with <|im_end|>, as when Decode stops on it (a random model rarely picks it: appended here).
    stub.CreateSession(pb.CreateSessionRequest(session_id="chat-c", model=args["model"]), timeout=30)
    stub.Append(pb.AppendRequest(session_id="chat-c", messages=[pb.ChatMessage(**m) for m in first]), timeout=60)
    g = [e.token_id for e in stub.Decode(pb.DecodeRequest(session_id="chat-c", max_tokens=5, sampling=GREEDY), timeout=120)]
    stub.Append(pb.AppendRequest(session_id="chat-c", token_ids=[im_end]), timeout=60)
    t2c = [p.token_id for p in stub.Append(pb.AppendRequest(session_id="chat-c", messages=[pb.ChatMessage(**m) for m in second], prompt_logprobs=True), timeout=60).prompt_logprobs]
    expected_c = sp.encode(prefix) + g + [im_end] + sp.encode("<|im_end|>" + suffix[len("<|im_end|>"):])[2:]
    out["after_eos_equals_rendered"] = t1 + g + [im_end] + t2c == expected_c
    out["after_eos"] = t2c
    return out


def perplexity(stub, args):
    out = []
    for i, text in enumerate(args["texts"]):
        sid = f"ppl-{i}"
        stub.CreateSession(pb.CreateSessionRequest(session_id=sid, model=args["model"]), timeout=30)
        r = stub.Append(pb.AppendRequest(session_id=sid, text=text, prompt_logprobs=True, top_logprobs=256), timeout=120)
        scored = [p.logprob for p in r.prompt_logprobs[1:]]
        out.append({"perplexity": math.exp(-sum(scored) / len(scored)), "logprobs": scored, "top": len(r.top_logprobs),
                    "ids": [p.token_id for p in r.prompt_logprobs], "appended": r.appended_tokens})
    return {"windows": out}


def stop_string(stub, args):
    """A stop string cut out of a reply ends an identical session's Decode right after it."""
    prompt = args["prompt"]
    texts = []
    for sid in ("stop-a", "stop-b"):
        stub.CreateSession(pb.CreateSessionRequest(session_id=sid, model=args["model"]), timeout=30)
        stub.Append(pb.AppendRequest(session_id=sid, text=prompt), timeout=60)
    full = "".join(e.text for e in stub.Decode(pb.DecodeRequest(session_id="stop-a", max_tokens=48, sampling=GREEDY), timeout=120))
    # Four characters of the reply, not all blank, so the match is not trivial.
    at = next(i for i in range(4, len(full) - 4) if full[i:i + 4].strip())
    stop = full[at:at + 4]
    events = list(stub.Decode(pb.DecodeRequest(session_id="stop-b", max_tokens=48, sampling=GREEDY, stop=[stop, "\x01never"]), timeout=120))
    texts = "".join(e.text for e in events)
    return {"full": full, "stop": stop, "stopped": texts, "finish": pb.FinishReason.Name(events[-1].finish_reason),
            "expected": full[:full.index(stop) + len(stop)]}


def bad_input(stub, args):
    codes = {}

    def code(name, call):
        try:
            call()
            codes[name] = "OK"
        except grpc.RpcError as e:
            codes[name] = e.code().name
            codes[name + "_message"] = e.details()

    chat_model, plain_model, byte_model = args["chat_model"], args["plain_model"], args["byte_model"]
    for sid, model in (("bad-chat", chat_model), ("bad-plain", plain_model), ("bad-byte", byte_model)):
        stub.CreateSession(pb.CreateSessionRequest(session_id=sid, model=model), timeout=30)
        stub.Append(pb.AppendRequest(session_id=sid, token_ids=[1, 2, 3]), timeout=30)
    msg = pb.ChatMessage
    code("text_over_limit", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat", text="x" * (args["max_chars"] + 1)), timeout=30))
    code("unknown_role", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat", messages=[msg(role="narrator", content="hi")]), timeout=30))
    code("no_template", lambda: stub.Append(pb.AppendRequest(session_id="bad-byte", messages=[msg(role="user", content="hi")]), timeout=30))
    code("no_tokenizer", lambda: stub.Append(pb.AppendRequest(session_id="bad-plain", text="hi"), timeout=30))
    code("two_inputs", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat", token_ids=[1], text="hi"), timeout=30))
    code("no_input", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat"), timeout=30))
    code("top_logprobs_negative", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat", token_ids=[5], top_logprobs=-1), timeout=30))
    code("top_logprobs_over_cap", lambda: stub.Append(pb.AppendRequest(session_id="bad-chat", token_ids=[5], top_logprobs=257), timeout=30))

    def decode(sid, **kw):
        return list(stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=4, sampling=GREEDY, **kw), timeout=60))
    code("stop_empty", lambda: decode("bad-chat", stop=[""]))
    code("stop_huge", lambda: decode("bad-chat", stop=["y" * 257]))
    code("stop_too_many", lambda: decode("bad-chat", stop=[str(i) for i in range(17)]))
    code("stop_without_tokenizer", lambda: decode("bad-plain", stop=["x"]))
    positions = {sid: stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=30).position for sid in ("bad-chat", "bad-plain", "bad-byte")}
    return {"codes": codes, "positions": positions}


SCENARIOS = {"chat": chat, "perplexity": perplexity, "stop-string": stop_string, "bad-input": bad_input}


def main():
    target, scenario, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        print(json.dumps(SCENARIOS[scenario](pb_grpc.KvCacheStub(channel), args)))


if __name__ == "__main__":
    main()
