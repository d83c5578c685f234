# An OTLP/gRPC upstream on grpcio (gRPC's C core and its HTTP/2): answers
# every unary method with an empty message, or with UNAVAILABLE when the
# call carries x-fail; prints its port, then one JSON line per call.
import base64
import json
import sys
from concurrent import futures

import grpc


def serve(method):
    def handler(request, context):
        md = {k: v for k, v in context.invocation_metadata()}
        print(json.dumps({"method": method, "body": base64.b64encode(request).decode(),
                          "metadata": {k: v for k, v in md.items() if isinstance(v, str)}}), flush=True)
        if "x-fail" in md:
            context.abort(grpc.StatusCode.UNAVAILABLE, "python upstream: " + md["x-fail"])
        return b""
    return handler


class Generic(grpc.GenericRpcHandler):
    def service(self, details):
        return grpc.unary_unary_rpc_method_handler(serve(details.method))


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((Generic(),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(json.dumps({"port": port}), flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop(0)
