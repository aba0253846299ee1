#!/usr/bin/env python3
"""Read kefu's event topic and print every event as a JSON line, decoded with proto/ alone.

    python consume.py --brokers 127.0.0.1:9092 --topic kefu.events.v1 --proto ../../proto

Needs: confluent-kafka, grpcio-tools (for protoc), protobuf (see deploy/python-requirements.txt).
The Python classes are generated from proto/ at start, so nothing of kefu's code is used.
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time
import uuid


def envelope_class(proto_dir):
    """Compiles proto/ with protoc (from grpcio-tools) and returns kefu.v1.Envelope."""
    import grpc_tools
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="kefu-proto-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True))
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}"] + files
    if protoc.main(args) != 0:
        sys.exit("protoc failed on " + proto_dir)
    sys.path.insert(0, out)
    from kefu.v1 import envelope_pb2  # noqa: E402  (generated just now)

    return envelope_pb2.Envelope


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="kefu.events.v1")
    parser.add_argument("--proto", default=os.path.join(os.path.dirname(__file__), "..", "..", "proto"))
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: follow)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds idle")
    args = parser.parse_args()

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from google.protobuf.json_format import MessageToDict

    Envelope = envelope_class(args.proto)
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": f"kefu-python-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "broker.address.family": "v4",
        }
    )
    # Read every partition from the beginning (no group membership needed).
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = metadata.topics[args.topic].partitions
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])

    seen = 0
    idle_since = time.monotonic()
    while args.count == 0 or seen < args.count:
        message = consumer.poll(0.5)
        if message is None:
            if time.monotonic() - idle_since > args.timeout:
                sys.exit(f"timed out after {seen} events")
            continue
        if message.error():
            sys.exit(f"kafka error: {message.error()}")
        idle_since = time.monotonic()
        envelope = Envelope()
        envelope.ParseFromString(message.value())
        member = envelope.WhichOneof("payload")
        print(
            json.dumps(
                {
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "key": message.key().decode(),
                    "globalPosition": envelope.global_position,
                    "eventType": envelope.event_type,
                    "schemaVersion": envelope.schema_version,
                    "streamType": envelope.stream_type,
                    "streamId": envelope.stream_id,
                    "streamVersion": envelope.stream_version,
                    "customerId": envelope.customer_id,
                    "occurredAt": envelope.occurred_at.ToJsonString(),
                    "recordedAt": envelope.recorded_at.ToJsonString(),
                    "actor": MessageToDict(envelope.actor),
                    "payloadField": member,
                    "payload": MessageToDict(getattr(envelope, member)),
                },
                ensure_ascii=False,
            ),
            flush=True,
        )
        seen += 1
    consumer.close()


if __name__ == "__main__":
    main()
