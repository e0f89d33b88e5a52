"""Transcoded renditions: bintu's profile names, checked and planned into the renditions a stream
stores (each plays out as "<stream name>-<position>")."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamward.errors import BadRequest

# bintu's transcoding profile names: "vtrans2-852x480x800x25" (width x height x kbps x fps) or
# "vtrans2-800k" (a bitrate only); "vtrans-" without the 2 is the older spelling of the same.
_PROFILE = re.compile(r"vtrans2?-(?:(\d{1,5})x(\d{1,5})x(\d{1,6})x(\d{1,3})|(\d{1,6})k)")
MAX_DIMENSION = 8192
MAX_BITRATE_KBPS = 100_000
MAX_FPS = 240
MAX_TRANSCODES = 8
# Offered by the dashboard; any name of the grammar above is accepted by the API.
COMMON_PROFILES: tuple[str, ...] = (
    "vtrans2-1280x720x2500x30",
    "vtrans2-852x480x800x25",
    "vtrans2-640x360x400x25",
    "vtrans2-426x240x200x25",
)


class InvalidTranscodeProfile(BadRequest):
    code = "invalid_transcode_profile"


@dataclass(frozen=True)
class TranscodeRequest:
    """One entry of ``transcodes`` as a client sends it: ``{"profile": "vtrans2-...", "tags": [...]}``."""

    profile: str
    tags: list[str] = field(default_factory=list)


def parse_profile(profile: str) -> tuple[int, int, int, int]:
    """(width, height, bitrate in kbps, fps) of a bintu profile name; 0 where the name says nothing
    (a bitrate-only profile keeps the source's size and frame rate). Raises InvalidTranscodeProfile."""
    match = _PROFILE.fullmatch(profile)
    if match is None:
        raise InvalidTranscodeProfile(
            f"Unknown transcode profile {profile[:80]!r}: use vtrans2-<width>x<height>x<kbps>x<fps> "
            "(e.g. vtrans2-852x480x800x25) or vtrans2-<kbps>k.",
            details={"profile": profile[:80]},
        )
    if match.group(5) is not None:
        width, height, bitrate, fps = 0, 0, int(match.group(5)), 0
    else:
        width, height, bitrate, fps = (int(group) for group in match.groups()[:4])
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION and 0 < fps <= MAX_FPS):
            raise InvalidTranscodeProfile(
                f"Transcode profile {profile!r} is out of range (size up to {MAX_DIMENSION}, "
                f"frame rate up to {MAX_FPS}).",
                details={"profile": profile},
            )
    if not 0 < bitrate <= MAX_BITRATE_KBPS:
        raise InvalidTranscodeProfile(
            f"Transcode profile {profile!r}: the bitrate must be 1 to {MAX_BITRATE_KBPS} kbps.",
            details={"profile": profile},
        )
    return width, height, bitrate, fps


def plan_renditions(stream_name: str, requests: Sequence[TranscodeRequest]) -> list[dict[str, Any]]:
    """The stored rendition objects for ``requests``, in order; each plays out as
    "<stream name>-<position>" (the passthrough, position 0, is the stream itself)."""
    if len(requests) > MAX_TRANSCODES:
        raise InvalidTranscodeProfile(
            f"A stream has at most {MAX_TRANSCODES} transcoded renditions.", details={"max": MAX_TRANSCODES}
        )
    seen: set[str] = set()
    renditions = []
    for position, request in enumerate(requests, start=1):
        width, height, bitrate, fps = parse_profile(request.profile)
        if request.profile in seen:
            raise InvalidTranscodeProfile(
                f"Transcode profile {request.profile!r} is given twice.", details={"profile": request.profile}
            )
        seen.add(request.profile)
        renditions.append(
            {
                "id": str(uuid.uuid4()),
                "profile": request.profile,
                "width": width,
                "height": height,
                "bitrate": bitrate,
                "fps": fps,
                "streamname": f"{stream_name}-{position}",
                "tags": list(request.tags),
            }
        )
    return renditions
