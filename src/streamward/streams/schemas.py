from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from streamward.schemas import ApiModel, ColumnText
from streamward.streams.models import Stream, StreamState
from streamward.streams.tags import distinct_tags, normalise_tag
from streamward.streams.transcode import TranscodeRequest

Tag = Annotated[str, AfterValidator(normalise_tag)]
GroupId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
StreamType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]+$"), ColumnText(Stream.type)]


class TranscodeIn(ApiModel):
    # Checked by the service (400 invalid_transcode_profile), not here: a client learns what the
    # grammar is rather than reading a schema error.
    profile: str = Field(default="", description="vtrans2-<width>x<height>x<kbps>x<fps> or vtrans2-<kbps>k")
    tags: list[str] = Field(default_factory=list, description="Tags of this rendition (h5live[].tags).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return distinct_tags(value)


class StreamCreate(ApiModel):
    """bintu's create body. Fields clients send that Streamward has no use for (``webrtc``,
    ``transcoding``, ``processing``...) are accepted and ignored; the body itself is optional."""

    tags: list[str] = Field(default_factory=list, description="Tags to put on the stream (created on use).")
    transcodes: list[TranscodeIn | str] = Field(
        default_factory=list,
        description="Transcoded renditions (Transcoding package): `{profile, tags?}` or a profile name.",
    )
    group_id: GroupId | None = Field(
        default=None, description="Groups streams: stream group playout and playback tokens by `groupid`."
    )
    type: StreamType = Field(default="live", description="Free label kept with the stream (bintu `type`).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return distinct_tags(value)

    def transcode_requests(self) -> list[TranscodeRequest]:
        return [
            TranscodeRequest(t.strip()) if isinstance(t, str) else TranscodeRequest(t.profile.strip(), t.tags)
            for t in self.transcodes
        ]


class StreamTagsUpdate(ApiModel):
    tags: list[str] = Field(description="The stream's tags from now on (replaces them all).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return distinct_tags(value)


class PushUrlUpdate(ApiModel):
    url: Annotated[str, ColumnText(Stream.push_url, min_length=0)] | None = Field(
        description="rtmp:// or rtmps:// restream target whose host resolves to public addresses; "
        "null or empty removes it."
    )


class PlayerAccess(ApiModel):
    token_required: bool = Field(
        description="Anonymous and player-key reads of stream info need a playback token "
        "(`?token=` or `X-Playback-Token`). Needs Secure Playback to turn on."
    )


class PlayerAccessOut(PlayerAccess):
    secure_playback: bool = Field(description="Whether the organisation has the Secure Playback package.")


# --- The bintu stream object (responses). bintu's own field names: snake_case, no aliases. ---


class BintuModel(BaseModel):
    pass


class RtmpAddress(BintuModel):
    url: str = Field(description="Base URL, without the stream name.")
    streamname: str


class Ingest(BintuModel):
    rtmp: RtmpAddress


class RtmpPlayout(BintuModel):
    url: str
    streamname: str
    type: Literal["live"]


class HlsPlayout(BintuModel):
    url: str
    type: Literal["live"]


class WebPlayout(BintuModel):
    url: str
    type: Literal["live", "vod"]
    id: str | None = Field(default=None, description="VOD entries: the asset's id.")
    streamId: str | None = Field(default=None, description="VOD entries: the recorded stream.")  # noqa: N815
    title: str | None = None
    duration: float | None = Field(default=None, description="VOD entries: seconds.")


class H5liveServer(BintuModel):
    websocket: str
    hls: str
    progressive: str


class RenditionInfo(BintuModel):
    width: int = Field(description="0: as published (the passthrough, or a bitrate-only profile).")
    height: int
    bitrate: int = Field(description="kbps; 0: as published.")
    fps: int


class H5livePlayout(BintuModel):
    id: str = Field(description="The passthrough's is the stream id; each transcode has its own.")
    index: int
    rtmp: RtmpAddress
    server: H5liveServer
    info: RenditionInfo
    label: str
    tags: list[str] | None = None


class Playout(BintuModel):
    rtmp: list[RtmpPlayout]
    hls: list[HlsPlayout]
    web: list[WebPlayout]
    h5live: list[H5livePlayout] = Field(description="One entry per rendition, passthrough first.")


class StreamOut(BintuModel):
    """The stream object as bintu clients read it (credentialed readers)."""

    id: str
    name: str
    state: StreamState
    type: str
    tags: list[str]
    created_at: str
    updated_at: str
    ingest: Ingest
    playout: Playout
    streamgroup: str | None
    push_url: str | None = Field(description="Restream target; shown to readers who may change it.")


class PlayerStreamOut(BintuModel):
    """The player profile: what a player needs to play, nothing to publish or administer."""

    id: str
    state: StreamState
    playout: Playout
    streamgroup: str | None


class GroupMember(BintuModel):
    id: str
    state: StreamState


class StreamGroupOut(BintuModel):
    id: str = Field(description="The group id, or the stream id of a stream in no group.")
    state: StreamState
    playout: Playout
    streamgroup: str | None
    streams: list[GroupMember]


class TagOut(ApiModel):
    name: str
    streams: int = Field(description="How many streams carry the tag.")


class TagPage(ApiModel):
    items: list[TagOut]
    next_cursor: str | None


class TagRename(ApiModel):
    name: Tag = Field(description="The new name; renaming onto a tag in use merges the two.")
