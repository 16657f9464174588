"""Video indexing: decode, track and identify faces, and read the text on screen."""

from faceledger.video.indexer import (
    IndexOptions,
    PersonAppearance,
    VideoIndex,
    index_video,
)
from faceledger.video.ocr import TextItem, TextLine, TextReader, TextTimeline
from faceledger.video.reader import SampledFrame, TimeSampler, VideoInfo, VideoReader
from faceledger.video.tracker import FaceTracker, TrackerOptions, link_tracks

__all__ = [
    "FaceTracker",
    "IndexOptions",
    "PersonAppearance",
    "SampledFrame",
    "TextItem",
    "TextLine",
    "TextReader",
    "TextTimeline",
    "TimeSampler",
    "TrackerOptions",
    "VideoIndex",
    "VideoInfo",
    "VideoReader",
    "index_video",
    "link_tracks",
]
