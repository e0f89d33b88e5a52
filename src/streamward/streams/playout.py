"""The stream object in bintu's shape (BINTU-WIRE.md section 2), built as plain JSON-ready dicts.

Three profiles of one stream:

* the full object (credentialed readers): ``id``, ``name``, ``state``, ``type``, ``tags``,
  ``created_at``, ``updated_at``, ``ingest.rtmp``, ``playout``, ``streamgroup``, ``push_url``;
* the player profile (anonymous and player-key readers, ``?profile=player``): ``id``, ``state``,
  ``playout``, ``streamgroup`` and nothing that lets anyone publish or administer;
* the stream group (``/stream/{id}/group``): every rendition of the group's streams in
  ``playout.h5live``, with ``playout.hls`` and ``playout.rtmp`` at the same indexes.

``playout`` is an object of arrays keyed by protocol, one entry per rendition, passthrough first.
The shapes are declared as response models in schemas.py; tests check every answer against them.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from streamward.config import Settings
from streamward.kept import KeptBy
from streamward.schemas import format_utc
from streamward.streams.models import Stream
from streamward.streams.service import Recording, StreamView

PASSTHROUGH_LABEL = "passthrough"


# Listed stream objects kept per set of addresses: a page of fifty transcoded streams is about 100 KB
# of JSON, so this holds some 40 pages' worth (4 MB); when full it starts again.
LISTED_KEPT = 2048


@dataclass(frozen=True, eq=False)
class Addresses:
    """Where broadcasters publish and players play, from the settings: one instance per set of
    addresses in the process (``of``), which keeps the listed stream objects built with them."""

    ingest_rtmp: str
    playout_rtmp: str
    hls_base: str
    web_player: str
    server: dict[str, str]
    # listed_json's: a listed stream's JSON by everything it is built from but these addresses.
    listed: KeptBy[Hashable, bytes] = field(default_factory=lambda: KeptBy(LISTED_KEPT), repr=False)

    @classmethod
    def of(cls, settings: Settings) -> Addresses:
        return _addresses(
            settings.ingest_rtmp_url,
            settings.playout_rtmp_url,
            settings.playout_base_url,
            settings.web_player_url,
            settings.h5live_websocket_url,
            settings.h5live_hls_url,
            settings.h5live_progressive_url,
        )


@functools.lru_cache(maxsize=16)
def _addresses(
    ingest_rtmp: str,
    playout_rtmp: str,
    hls_base: str,
    web_player: str,
    websocket: str,
    hls: str,
    progressive: str,
) -> Addresses:
    server = {"websocket": websocket, "hls": hls, "progressive": progressive}
    return Addresses(ingest_rtmp, playout_rtmp, hls_base, web_player, server)


@dataclass(frozen=True)
class Rendition:
    """One playable rendition: the passthrough (index 0, the stream itself) or a transcode."""

    id: str
    streamname: str
    width: int
    height: int
    bitrate: int  # kbps; 0: as published
    fps: int
    label: str
    tags: Sequence[str]


def _label(width: int, height: int, bitrate: int) -> str:
    return f"{width}x{height} {bitrate}kbps" if width and height else f"{bitrate}kbps"


def renditions_of(stream: Stream) -> list[Rendition]:
    """Passthrough first, then the transcodes in the order they were asked for. The passthrough's
    size, bitrate and frame rate are those of whatever is published: 0 here."""
    result = [Rendition(str(stream.id), stream.name, 0, 0, 0, 0, PASSTHROUGH_LABEL, ())]
    for t in stream.transcodes:
        result.append(
            Rendition(
                t["id"],
                t["streamname"],
                t["width"],
                t["height"],
                t["bitrate"],
                t["fps"],
                _label(t["width"], t["height"], t["bitrate"]),
                t.get("tags", []),
            )
        )
    return result


def _vod_entry(asset: Recording) -> dict[str, Any]:
    return {
        "url": asset.url,
        "type": "vod",
        "id": str(asset.id),
        "streamId": str(asset.stream_id),
        "title": asset.title,
        "duration": asset.duration_seconds,
    }


def playout_of(
    renditions: Sequence[Rendition], addresses: Addresses, *, vod: Sequence[Recording] = ()
) -> dict[str, Any]:
    rtmp, hls, h5live = [], [], []
    for index, r in enumerate(renditions):
        rtmp.append({"url": addresses.playout_rtmp, "streamname": r.streamname, "type": "live"})
        hls.append({"url": f"{addresses.hls_base}/{r.streamname}/index.m3u8", "type": "live"})
        entry: dict[str, Any] = {
            "id": r.id,
            "index": index,
            "rtmp": {"url": addresses.playout_rtmp, "streamname": r.streamname},
            "server": addresses.server,
            "info": {"width": r.width, "height": r.height, "bitrate": r.bitrate, "fps": r.fps},
            "label": r.label,
        }
        if r.tags:
            entry["tags"] = list(r.tags)
        h5live.append(entry)
    web = [{"url": f"{addresses.web_player}?streamname={renditions[0].streamname}", "type": "live"}]
    web.extend(_vod_entry(asset) for asset in vod)
    return {"rtmp": rtmp, "hls": hls, "web": web, "h5live": h5live}


def stream_object(view: StreamView, addresses: Addresses, *, show_push_url: bool) -> dict[str, Any]:
    """The full stream object, for readers with credentials. ``push_url`` is shown only to those
    who may change it: such a URL usually carries the restream target's stream key."""
    stream = view.stream
    return {
        "id": str(stream.id),
        "name": stream.name,
        "state": stream.state,
        "type": stream.type,
        "tags": view.tags,
        "created_at": format_utc(stream.created_at),
        "updated_at": format_utc(stream.updated_at),
        "ingest": {"rtmp": {"url": addresses.ingest_rtmp, "streamname": stream.name}},
        "playout": playout_of(renditions_of(stream), addresses, vod=view.vod),
        "streamgroup": stream.group_id,
        "push_url": stream.push_url if show_push_url else None,
    }


def listed_json(view: StreamView, addresses: Addresses, *, player: bool, show_push_url: bool) -> bytes:
    """The JSON of a listed stream's object: the player profile, or the full object. Building fifty
    of them (and their GC) was the larger part of a listing's CPU, and players list the same streams
    again and again: the JSON is kept by everything it is built from, the row as read
    (``StreamView.row``), the tags, the recordings shown and the profile, so a changed stream, even
    changed without a new ``updated_at``, is a new key and never answered from an older one."""
    if view.row is None:
        return to_json(_built(view, addresses, player=player, show_push_url=show_push_url))
    key = (
        view.row,
        player,
        show_push_url and not player,
        tuple(view.tags),
        tuple((a.id, a.stream_id, a.url, a.title, a.duration_seconds) for a in view.vod),
    )
    return addresses.listed.get(
        key, lambda _: to_json(_built(view, addresses, player=player, show_push_url=show_push_url))
    )


def _built(view: StreamView, addresses: Addresses, *, player: bool, show_push_url: bool) -> dict[str, Any]:
    return (
        player_object(view, addresses)
        if player
        else stream_object(view, addresses, show_push_url=show_push_url)
    )


def player_object(view: StreamView, addresses: Addresses) -> dict[str, Any]:
    """What a player reads, and nothing that lets anyone publish or administer."""
    stream = view.stream
    return {
        "id": str(stream.id),
        "state": stream.state,
        "playout": playout_of(renditions_of(stream), addresses, vod=view.vod),
        "streamgroup": stream.group_id,
    }


def group_object(members: Sequence[Stream], addresses: Addresses) -> dict[str, Any]:
    """The stream group of ``members[0]``: every rendition of every member, in order."""
    head = members[0]
    renditions = [r for member in members for r in renditions_of(member)]
    playout = playout_of(renditions, addresses)
    playout["web"] = []  # a group is played live; recordings are listed with each stream
    return {
        "id": head.group_id or str(head.id),
        "state": head.state,
        "playout": playout,
        "streamgroup": head.group_id,
        "streams": [{"id": str(m.id), "state": m.state} for m in members],
    }
