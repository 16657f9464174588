"""Video indexing: decode, track and identify faces, read the text on screen, transcribe speech."""

from faceledger.video.indexer import (
    IndexOptions,
    PersonAppearance,
    VideoIndex,
    index_video,
)
from faceledger.video.ocr import TextItem, TextLine, TextReader, TextTimeline
from faceledger.video.reader import (
    MediaStreams,
    SampledFrame,
    TimeSampler,
    VideoInfo,
    VideoReader,
    probe_streams,
)
from faceledger.video.soundtrack import Transcriber
from faceledger.video.tracker import FaceTracker, TrackerOptions, link_tracks

__all__ = [
    "FaceTracker",
    "IndexOptions",
    "MediaStreams",
    "PersonAppearance",
    "SampledFrame",
    "TextItem",
    "TextLine",
    "TextReader",
    "TextTimeline",
    "TimeSampler",
    "TrackerOptions",
    "Transcriber",
    "VideoIndex",
    "VideoInfo",
    "VideoReader",
    "index_video",
    "link_tracks",
    "probe_streams",
]
