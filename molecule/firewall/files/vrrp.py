"""Test stand-in for VRRP: send one IP protocol 112 packet, or count the ones that reach this host.

    python3 vrrp.py send ADDRESS TAG      one packet to ADDRESS carrying TAG
    python3 vrrp.py listen SECONDS        print the TAG of each packet delivered within SECONDS, one per line

A raw socket gets a packet only after the host's input hooks passed it, so a packet the firewall dropped
is never printed."""

import socket
import sys
import time

VRRP = 112


def send(address, tag):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP)
    sock.sendto(b"\x31\x01\x64\x00" + tag.encode(), (address, 0))


def listen(seconds):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = sock.recvfrom(2048)[0]
        except TimeoutError:
            break
        header = (data[0] & 0x0F) * 4  # raw IPv4 sockets receive the IP header
        print(data[header + 4 :].decode(errors="replace"), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3])
    else:
        listen(sys.argv[2])
