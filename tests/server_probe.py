"""Runs `pysfu serve` with probes that record every codec context the
process opens and every thread it starts; the record is written as JSON to
the path given first on the command line when the server exits.

Used by tests to prove the server forwards without decoding or encoding.
"""

import atexit
import json
import sys
import threading

import aiortc.codecs.g711
import aiortc.codecs.g722
import aiortc.codecs.opus
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av

record = {"codec_contexts": [], "decoders": [], "encoders": [], "threads": []}
_real_context = av.CodecContext


class _ProbedCodecContext:
    @staticmethod
    def create(*args, **kwargs):
        record["codec_contexts"].append(repr(args))
        return _real_context.create(*args, **kwargs)


for module in (av, aiortc.codecs.g711, aiortc.codecs.g722, aiortc.codecs.opus):
    module.CodecContext = _ProbedCodecContext

_get_decoder = aiortc.rtcrtpreceiver.get_decoder
_get_encoder = aiortc.rtcrtpsender.get_encoder


def get_decoder(codec):
    record["decoders"].append(codec.mimeType)
    return _get_decoder(codec)


def get_encoder(codec):
    record["encoders"].append(codec.mimeType)
    return _get_encoder(codec)


aiortc.rtcrtpreceiver.get_decoder = get_decoder
aiortc.rtcrtpsender.get_encoder = get_encoder

_thread_start = threading.Thread.start


def start(self, *args, **kwargs):
    record["threads"].append(self.name)
    return _thread_start(self, *args, **kwargs)


threading.Thread.start = start

report_path = sys.argv.pop(1)


@atexit.register
def _write_report():
    with open(report_path, "w") as handle:
        json.dump(record, handle)


from signaling.cli import main  # noqa: E402

main(sys.argv[1:])
