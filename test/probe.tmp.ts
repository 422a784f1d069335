import http2 from "node:http2";
import net from "node:net";
import { startTestApp } from "./helpers/test-app.js";

const t = await startTestApp({
  JOBQUEUE_MAX_REQUEST_BYTES: "65536",
  JOBQUEUE_MAX_BODY_BYTES: "32768",
});
for (const size of [100_000, 20_000, 1_000_000]) {
  const got = await new Promise<string>((resolve) => {
    const s = net.connect(t.port, "127.0.0.1");
    let out = "";
    s.on("data", (d) => (out += d));
    s.on("error", (e) => resolve(`error ${e.message} after ${JSON.stringify(out.slice(0, 60))}`));
    s.on("close", () => resolve(out.slice(0, 80)));
    s.write(`GET /jobs?x=${"a".repeat(size)} HTTP/1.1\r\nhost: x\r\n\r\n`);
  });
  console.log("line", size, JSON.stringify(got));
}
const session = http2.connect(t.url);
const r = session.request({
  ":method": "POST",
  ":path": "/jobqueue.v1.JobQueueService/EnqueueJob",
  "content-type": "application/grpc",
  te: "trailers",
});
r.on("response", (h) => console.log("resp", h[":status"]));
r.on("trailers", (h) => console.log("trailers", h["grpc-status"], h["grpc-message"]));
const head = Buffer.alloc(5);
head.writeUInt32BE(200_000, 1);
r.write(head);
r.write(Buffer.alloc(100_000));
const closed = await Promise.race([
  new Promise((res) => r.on("close", () => res(`closed rst=${r.rstCode}`))),
  new Promise((res) => setTimeout(() => res("still open after 2s"), 2000)),
]);
console.log(closed);
session.destroy();
await t.stop();
