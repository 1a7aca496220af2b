"""The kubelet's side of the device plugin API, for apps/node/tests/device_plugin.rs: no
kubelet runs on these machines. It uses gRPC's own implementation (Debian's
python3-grpcio), not ours, with the few protobuf messages encoded by hand.

usage: fake_kubelet.py DIR COUNT   (prints one JSON document with what it saw)
"""
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, payload):
    return varint((tag << 3) | 2) + varint(len(payload)) + payload


def read_varint(buf, i):
    """The varint at buf[i:], and the index after it."""
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def parse(buf):
    """{tag: [value, ...]} of a protobuf message: bytes for length-delimited, ints else."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        tag, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            v = buf[i:i + n]
            i += n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        out.setdefault(tag, []).append(v)
    return out


def text(msg, tag):
    return msg.get(tag, [b""])[0].decode()


def main():
    directory, count = sys.argv[1], int(sys.argv[2])
    registered = []
    done = threading.Event()

    def register(request, context):
        m = parse(request)
        registered.append({"version": text(m, 1), "endpoint": text(m, 2),
                           "resourceName": text(m, 3)})
        if len(registered) >= 2:
            done.set()
        return b""  # Empty

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "v1beta1.Registration",
        {"Register": grpc.unary_unary_rpc_method_handler(register)}),))
    server.add_insecure_port("unix:" + os.path.join(directory, "kubelet.sock"))
    server.start()
    print("ready", file=sys.stderr, flush=True)
    if not done.wait(30):
        print(json.dumps({"error": "not registered", "registered": registered}))
        return 1
    seen = {"registered": registered, "plugins": {}}
    for r in registered:
        channel = grpc.insecure_channel("unix:" + os.path.join(directory, r["endpoint"]))
        stream = channel.unary_stream("/v1beta1.DevicePlugin/ListAndWatch")(b"", timeout=30)
        first = parse(next(stream))
        devices = [parse(d) for d in first.get(1, [])]
        ids = [text(d, 1) for d in devices]
        health = sorted({text(d, 2) for d in devices})
        request = field(1, b"".join(field(1, i.encode()) for i in ids[:2]))
        answer = parse(channel.unary_unary("/v1beta1.DevicePlugin/Allocate")(request, timeout=10))
        specs = []
        for c in answer.get(1, []):
            for d in parse(c).get(3, []):
                spec = parse(d)
                specs.append({"containerPath": text(spec, 1), "hostPath": text(spec, 2),
                              "permissions": text(spec, 3)})
        try:
            channel.unary_unary("/v1beta1.DevicePlugin/Allocate")(
                field(1, field(1, b"nvidia0")), timeout=10)
            refused = None
        except grpc.RpcError as e:
            refused = {"code": e.code().name, "details": e.details()}
        stream.cancel()
        channel.close()
        seen["plugins"][r["resourceName"]] = {"count": len(ids), "health": health,
                                              "allocate": specs, "refused": refused}
    print(json.dumps(seen))
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
