// An OTLP/gRPC client on @grpc/grpc-js (Node's HTTP/2, nghttp2): reads
// cases as JSON from stdin, calls each with bytes in and out, prints the
// results.
const grpc = require('@grpc/grpc-js');

const target = process.argv[2];
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const plain = new grpc.Client(target, grpc.credentials.createInsecure());
  const gzip = new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
  const results = [];
  for (const c of JSON.parse(input)) {
    const md = new grpc.Metadata();
    for (const [k, v] of c.metadata || []) md.add(k, v);
    const client = c.gzip ? gzip : plain;
    results.push(await new Promise((resolve) => {
      client.makeUnaryRequest(c.method, (b) => b, (b) => b, Buffer.from(c.body, 'base64'), md,
        { deadline: Date.now() + 10000 }, (err, resp) => {
          if (err) resolve({ name: c.name, code: err.code, message: err.details || '' });
          else resolve({ name: c.name, code: 0, response: resp.toString('base64') });
        });
    }));
  }
  plain.close();
  gzip.close();
  console.log(JSON.stringify(results));
});
