"""Calls berthd over its unix socket with Python's grpcio (gRPC C-core), the way grpcio,
grpc-java and grpc-swift clients do: C-core sends the percent-encoded socket path as the
HTTP/2 `:authority`. Each method named on the command line is called with an empty request,
several times on one channel (so later calls refer to the HPACK dynamic table entries the
first call made), with metadata; the response of each call is printed as
`<method> <hex of the response message>`.

usage: python3 grpcio_version.py SOCKET METHOD...
"""

import sys

import grpc


def main() -> int:
    socket, methods = sys.argv[1], sys.argv[2:]
    with grpc.insecure_channel("unix:" + socket) as channel:
        for method in methods:
            call = channel.unary_unary(
                method,
                request_serializer=lambda message: message,
                response_deserializer=lambda message: message,
            )
            for attempt in range(3):
                response = call(
                    b"",
                    timeout=10,
                    metadata=(
                        ("containerd-namespace", "default"),
                        ("x-berth-test", "attempt-%d" % attempt),
                    ),
                )
            print(method, response.hex(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
