"""Join the part files of a segmented recording into its one output MCAP, atomically.

Parts cover disjoint, increasing time ranges, so appending them in order keeps log-time order.
Schemas and channels are registered once per (topic, schema) in the output; message bytes are
copied unchanged. The output appears under its final name only when complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def merge_parts(parts: Sequence[Path], output: Path) -> int:
    """Write ``output`` from ``parts`` (in order); returns the number of messages written."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    temporary = output.with_name(f".{output.name}.tmp")
    written = 0
    with temporary.open("wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="fcclip_ros")
        schema_ids: dict[tuple[str, str, bytes], int] = {}
        channel_ids: dict[tuple[str, int], int] = {}
        for part in parts:
            with part.open("rb") as source:
                reader = make_reader(source)
                for schema, channel, message in reader.iter_messages(log_time_order=False):
                    schema_key = (schema.name, schema.encoding, schema.data)
                    if schema_key not in schema_ids:
                        schema_ids[schema_key] = writer.register_schema(schema.name, schema.encoding, schema.data)
                    channel_key = (channel.topic, schema_ids[schema_key])
                    if channel_key not in channel_ids:
                        channel_ids[channel_key] = writer.register_channel(
                            channel.topic, channel.message_encoding, schema_ids[schema_key], dict(channel.metadata))
                    writer.add_message(channel_ids[channel_key], log_time=message.log_time, data=message.data,
                                       publish_time=message.publish_time, sequence=message.sequence)
                    written += 1
        writer.finish()
        stream.flush()
        os.fsync(stream.fileno())
    temporary.replace(output)
    return written
