"""A worker program whose converter inflates zlib payloads (`ZlibCodec`, 1 MiB at most), for
the compression-bomb row of `tests/bad_inputs/test_codecs.py`. It hosts the bad-code apps'
`Quick` and `Sleeper` on the task queue `zlib`."""

import asyncio

from streams import Client, DataConverter, Worker, ZlibCodec
from tests.bad_inputs.apps import Quick, Sleeper, echo

QUEUE = "zlib"
MAX_INFLATED = 1024 * 1024


async def main() -> None:
    converter = DataConverter([ZlibCodec(max_decompressed_bytes=MAX_INFLATED)])
    client = await Client.connect(converter=converter)
    worker = Worker(client, task_queue=QUEUE, workflows=[Quick, Sleeper], activities=[echo])
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
