"""Test stand-in for the services behind the firewall: accept TCP on every port given and answer each
connection with one line naming this host and the port. Usage: python3 listen.py PORT..."""

import socket
import socketserver
import sys
import threading


class Hello(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(("hello from %s:%d\n" % (socket.gethostname(), self.server.server_address[1])).encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(ports):
    servers = [Server(("0.0.0.0", int(port)), Hello) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
