#!/usr/bin/env python3
"""An HTTP proxy that adds latency to every request: the AWS API emulator
answers in ~10 ms, real AWS takes far longer, and a comparison of parallel
and sequential deploys is only meaningful with realistic call times.

    latency_proxy.py LISTEN_PORT TARGET_URL DELAY_MS

Prints "ready" once it listens. Each request waits DELAY_MS before it is
forwarded, as a slow API would; requests are served concurrently.
"""
import http.client
import http.server
import sys
import time
import urllib.parse


def main():
    listen_port, target, delay_ms = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), int(sys.argv[3])

    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            time.sleep(delay_ms / 1000)
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for k, v in response.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", listen_port), Forward)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
