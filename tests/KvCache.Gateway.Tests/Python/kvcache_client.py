"""Drives the KV-cache service with a stock python3-grpcio client (stubs generated from the project's proto).

Usage: kvcache_client.py TARGET SCENARIO [ARGS_JSON]; prints one JSON object on stdout.
The C# interop tests run each scenario and assert on the printed result.
"""
import json
import sys
import time

import grpc
from kvcache.v1 import kvcache_pb2 as pb
from kvcache.v1 import kvcache_pb2_grpc as pb_grpc


def greedy(stub, session_id, max_tokens, metadata=(), request_id=""):
    request = pb.DecodeRequest(
        session_id=session_id,
        max_tokens=max_tokens,
        sampling=pb.SamplingParams(temperature=0.0),
        request_id=request_id,
    )
    events = list(stub.Decode(request, metadata=metadata, timeout=120))
    return [e.token_id for e in events], [e.position for e in events], events[-1].finish_reason


def session_dict(s):
    return {
        "id": s.id, "model": s.model, "codec": s.codec, "position": s.position,
        "state": pb.SessionState.Name(s.state), "owner_silo": s.owner_silo,
        "cache_bytes": s.cache_bytes, "bytes_per_token": s.bytes_per_token,
    }


def resume_phase1(stub, _channel, args):
    """Session A decodes part of the way and is spilled; its twin B decodes everything undisturbed."""
    prompt = args["prompt"]
    out = {}
    for sid in (args["a"], args["b"]):
        created = stub.CreateSession(pb.CreateSessionRequest(session_id=sid, codec="full"), timeout=30)
        out["created_" + sid] = session_dict(created)
        appended = stub.Append(pb.AppendRequest(session_id=sid, token_ids=prompt, top_logprobs=3), timeout=60)
        out["append_position"] = appended.position
        out["append_top"] = [[t.token_id, t.logprob] for t in appended.top_logprobs]
    out["a_tokens"], out["a_positions"], _ = greedy(stub, args["a"], args["first"])
    out["b_tokens"], out["b_positions"], finish = greedy(stub, args["b"], args["first"] + args["rest"])
    out["b_finish"] = pb.FinishReason.Name(finish)
    out["a_before_spill"] = session_dict(stub.GetSession(pb.GetSessionRequest(session_id=args["a"]), timeout=30))
    out["a_spilled"] = session_dict(stub.SpillSession(pb.SpillSessionRequest(session_id=args["a"]), timeout=60))
    return out


def resume_phase2(stub, _channel, args):
    """After the restart: A continues where it stopped."""
    out = {"a_after_restart": session_dict(stub.GetSession(pb.GetSessionRequest(session_id=args["a"]), timeout=30))}
    out["a_tokens"], out["a_positions"], _ = greedy(stub, args["a"], args["rest"])
    out["a_active"] = session_dict(stub.GetSession(pb.GetSessionRequest(session_id=args["a"]), timeout=30))
    return out


def code_of(call):
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def details_of(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return e.details()


def position_of(stub, sid, metadata):
    return stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=metadata, timeout=30).position


def bad_inputs(stub, channel, args):
    """Each bad request gets its status code; a good request afterwards still works."""
    key = [("authorization", "Bearer " + args["key"])]
    wrong = [("authorization", "Bearer not-a-key")]
    sid = args["session"]
    vocab = args["vocab"]
    codes = {}
    codes["create"] = code_of(lambda: stub.CreateSession(pb.CreateSessionRequest(session_id=sid), metadata=key, timeout=30))
    codes["create_duplicate"] = code_of(lambda: stub.CreateSession(pb.CreateSessionRequest(session_id=sid), metadata=key, timeout=30))
    codes["no_key"] = code_of(lambda: stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=30))
    codes["wrong_key"] = code_of(lambda: stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=wrong, timeout=30))
    codes["other_tenant"] = code_of(lambda: stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=[("authorization", "Bearer " + args["other_key"])], timeout=30))
    codes["unknown_session"] = code_of(lambda: stub.GetSession(pb.GetSessionRequest(session_id="no-such-session"), metadata=key, timeout=30))
    codes["unknown_session_decode"] = code_of(lambda: stub.Decode(pb.DecodeRequest(session_id="no-such-session", max_tokens=4), metadata=key, timeout=30))
    codes["bad_session_id"] = code_of(lambda: stub.GetSession(pb.GetSessionRequest(session_id="bad id!"), metadata=key, timeout=30))
    codes["unknown_model"] = code_of(lambda: stub.CreateSession(pb.CreateSessionRequest(model="no-such-model"), metadata=key, timeout=30))
    codes["unknown_codec"] = code_of(lambda: stub.CreateSession(pb.CreateSessionRequest(codec="zip"), metadata=key, timeout=30))
    # Caller values far over any limit are refused with a short message (a stock client refuses response metadata
    # over 8 KiB), and the channel keeps working for the calls that follow.
    huge = "x" * 100_000
    for name, call in (
            ("huge_model", lambda: stub.CreateSession(pb.CreateSessionRequest(model=huge), metadata=key, timeout=30)),
            ("huge_codec", lambda: stub.CreateSession(pb.CreateSessionRequest(codec=huge), metadata=key, timeout=30)),
            ("huge_session_id", lambda: stub.GetSession(pb.GetSessionRequest(session_id=huge), metadata=key, timeout=30)),
            ("huge_request_id", lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[1], request_id=huge), metadata=key, timeout=30)),
            ("huge_decode_request_id", lambda: stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=1, request_id=huge), metadata=key, timeout=30)),
            ("long_unknown_model", lambda: stub.CreateSession(pb.CreateSessionRequest(model="m" * 120), metadata=key, timeout=30))):
        codes[name] = code_of(call)
        codes[name + "_details"] = details_of(call)
    codes["out_of_vocab"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[1, vocab]), metadata=key, timeout=30))
    codes["negative_token"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[-1]), metadata=key, timeout=30))
    codes["empty_append"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[]), metadata=key, timeout=30))
    codes["oversized_append"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[1] * (args["max_append"] + 1)), metadata=key, timeout=30))
    codes["oversized_message"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=[100000] * 2_000_000), metadata=key, timeout=30))
    codes["decode_before_append"] = code_of(lambda: stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=4), metadata=key, timeout=30))
    codes["decode_zero_tokens"] = code_of(lambda: stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=0), metadata=key, timeout=30))
    codes["bad_sampling"] = code_of(lambda: stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=4, sampling=pb.SamplingParams(top_p=2.0)), metadata=key, timeout=30))
    codes["append"] = code_of(lambda: stub.Append(pb.AppendRequest(session_id=sid, token_ids=args["prompt"]), metadata=key, timeout=60))
    # A retried Append with a request id applies once: the second answer is the first one, replayed.
    retried = [stub.Append(pb.AppendRequest(session_id=sid, token_ids=[5, 6, 7], top_logprobs=2, request_id="turn-2"), metadata=key, timeout=60)
               for _ in range(2)]
    codes["append_retries"] = [[r.position, r.appended_tokens, r.replayed, [[t.token_id, t.logprob] for t in r.top_logprobs]] for r in retried]
    # A long decode under a deadline far too short for it.
    codes["expired_deadline"] = code_of(lambda: stub.Decode(pb.DecodeRequest(session_id=sid, max_tokens=args["long_decode"]), metadata=key, timeout=0.05))
    # The server's side of the call stopped too: the position no longer moves, short of the long decode's end.
    time.sleep(1)
    first = position_of(stub, sid, key)
    time.sleep(1)
    codes["positions_after_deadline"] = [first, position_of(stub, sid, key)]
    # Methods and services the server does not have, called the way a generic client would.
    for name, method in (("unknown_method", "/kvcache.v1.KvCache/NoSuchMethod"), ("unknown_service", "/kvcache.v9.Nope/GetSession")):
        codes[name] = code_of(lambda: channel.unary_unary(method)(b"", metadata=key, timeout=30))
    # A status message with non-ASCII text (percent-encoded on the wire) arrives intact.
    codes["unknown_model_details"] = details_of(lambda: stub.CreateSession(pb.CreateSessionRequest(model=args["non_ascii_model"]), metadata=key, timeout=30))
    codes["other_tenant_delete"] = code_of(lambda: stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=[("authorization", "Bearer " + args["other_key"])], timeout=30))
    # Still serving, and the session is intact after all of the above.
    tokens, _, _ = greedy(stub, sid, 4, metadata=key)
    codes["decode_after"] = "OK" if len(tokens) == 4 else "WRONG_COUNT"
    other_list = stub.ListSessions(pb.ListSessionsRequest(), metadata=[("authorization", "Bearer " + args["other_key"])], timeout=30)
    codes["other_tenant_lists"] = [s.id for s in other_list.sessions]
    return codes


SCENARIOS = {"resume-phase1": resume_phase1, "resume-phase2": resume_phase2, "bad-inputs": bad_inputs}


def main():
    target, scenario = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        result = SCENARIOS[scenario](pb_grpc.KvCacheStub(channel), channel, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
