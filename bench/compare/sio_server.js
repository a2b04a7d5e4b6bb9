// sio_server.js -- the Socket.IO peer for bench/compare.
//
// Socket.IO 4.8 with connection state recovery on the Redis streams adapter
// (sessions and the message stream live in the run's Redis), everything else
// at its defaults. What the load generator (peerbench, dialect "sio") uses:
//   emit("join", room, ack)   joins a room; ack() once joined
//   emit("pub", room, data)   broadcasts event "m" with data to the room
// A recovered client gets its rooms back and the missed "m" events from the
// stream; the generator tells a recovery by its pid coming back unchanged.
//
// Environment: PORT (listens on 127.0.0.1 only), REDIS_URL.
// Prints {"event":"listening","port":N} on stdout once it accepts connections.
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const port = Number(process.env.PORT);
const redisUrl = process.env.REDIS_URL;
if (!port || !redisUrl) {
  console.error("sio_server.js: set PORT and REDIS_URL");
  process.exit(2);
}

async function main() {
  const redis = createClient({ url: redisUrl });
  redis.on("error", (e) => console.error("redis: " + e.message));
  await redis.connect();

  const httpServer = http.createServer((req, res) => {
    // A health probe for the runner; Socket.IO answers its own paths.
    if (req.url === "/healthz") {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("ok\n");
    }
  });
  const io = new Server(httpServer, {
    adapter: createAdapter(redis),
    connectionStateRecovery: {
      // The documented default, written out: sessions survive 2 minutes.
      maxDisconnectionDuration: 2 * 60 * 1000,
      skipMiddlewares: true,
    },
  });

  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      if (typeof room !== "string") return;
      socket.join(room);
      if (typeof ack === "function") ack(room);
    });
    socket.on("pub", (room, data) => {
      if (typeof room !== "string") return;
      io.to(room).emit("m", data);
    });
  });

  httpServer.listen(port, "127.0.0.1", () => {
    console.log(JSON.stringify({ event: "listening", port, pid: process.pid }));
  });
  const stop = () => {
    io.close();
    redis.quit().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error("sio_server.js: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
