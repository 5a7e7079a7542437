"""Drives the test server with python3-grpcio and stubs generated from kvcache.proto.

Usage: kvcache_interop_client.py HOST:PORT CASE
Prints key=value lines for the C# test to check; exits non-zero (traceback) on any mismatch.
"""
import sys

import grpc
from kvcache.v1 import kvcache_pb2 as pb
from kvcache.v1 import kvcache_pb2_grpc as rpc


def expect_error(call, code):
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
        return error
    raise AssertionError(f"expected {code}, the call succeeded")


def main(address, case):
    with grpc.insecure_channel(address) as channel:
        stub = rpc.KvCacheStub(channel)
        if case == "unary":
            session = stub.CreateSession(
                pb.CreateSessionRequest(model="tiny", session_id="py-1"),
                metadata=[("authorization", "Bearer py-key")],
                timeout=30)
            assert session.id == "py-1", session
            assert session.codec == "full", session
            assert session.state == pb.SESSION_STATE_ACTIVE, session
            print(f"owner={session.owner_silo}")
        elif case == "stream":
            events = list(stub.Decode(pb.DecodeRequest(session_id="py-1", max_tokens=500), timeout=30))
            assert [e.position for e in events] == list(range(1, 501)), events[:3]
            assert all(e.finish_reason == pb.FINISH_REASON_UNSPECIFIED for e in events[:-1])
            assert events[-1].finish_reason == pb.FINISH_REASON_MAX_TOKENS, events[-1]
            print(f"events={len(events)}")
        elif case == "stream-error":
            received = []

            def read():
                for event in stub.Decode(pb.DecodeRequest(session_id="fail-after-3", max_tokens=10), timeout=30):
                    received.append(event.position)

            error = expect_error(read, grpc.StatusCode.ABORTED)
            print(f"received={received}")
            print(f"details={error.details()}")
        elif case == "status":
            error = expect_error(
                lambda: stub.GetSession(pb.GetSessionRequest(session_id="missing"), timeout=30),
                grpc.StatusCode.NOT_FOUND)
            print(f"details={error.details()}")
        elif case == "deadline":
            expect_error(
                lambda: stub.ListModels(pb.ListModelsRequest(), timeout=3),
                grpc.StatusCode.DEADLINE_EXCEEDED)
            print("deadline=ok")
        elif case == "unimplemented":
            expect_error(
                lambda: stub.SpillSession(pb.SpillSessionRequest(session_id="py-1"), timeout=30),
                grpc.StatusCode.UNIMPLEMENTED)
            print("unimplemented=ok")
        else:
            raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
