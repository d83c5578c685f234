// An OTLP/gRPC upstream on @grpc/grpc-js (Node's HTTP/2, nghttp2): serves
// the methods named on the command line with an empty message, or with
// UNAVAILABLE when the call carries x-fail; prints its port, then one JSON
// line per call.
const grpc = require('@grpc/grpc-js');

const server = new grpc.Server();
for (const method of process.argv.slice(2)) {
  server.register(method, (call, callback) => {
    const md = {};
    for (const [k, v] of Object.entries(call.metadata.getMap())) if (typeof v === 'string') md[k] = v;
    console.log(JSON.stringify({ method, body: call.request.toString('base64'), metadata: md }));
    if (md['x-fail']) callback({ code: grpc.status.UNAVAILABLE, details: 'node upstream: ' + md['x-fail'] });
    else callback(null, Buffer.alloc(0));
  }, (b) => b, (b) => b, 'unary');
}
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ port }));
});
process.stdin.resume();
process.stdin.on('end', () => server.forceShutdown());
