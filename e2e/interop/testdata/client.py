# An OTLP/gRPC client on grpcio (gRPC's C core and its HTTP/2): reads cases
# as JSON from stdin, calls each with bytes in and out, prints the results.
import base64
import json
import sys

import grpc

target = sys.argv[1]
results = []
with grpc.insecure_channel(target) as channel:
    for case in json.load(sys.stdin):
        call = channel.unary_unary(case["method"], request_serializer=None, response_deserializer=None)
        try:
            resp = call(
                base64.b64decode(case["body"]),
                metadata=[tuple(kv) for kv in case.get("metadata") or []],
                compression=grpc.Compression.Gzip if case.get("gzip") else grpc.Compression.NoCompression,
                timeout=10,
            )
            results.append({"name": case["name"], "code": 0, "response": base64.b64encode(resp).decode()})
        except grpc.RpcError as e:
            results.append({"name": case["name"], "code": e.code().value[0], "message": e.details() or ""})
print(json.dumps(results))
