from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from streamward.schemas import ApiModel, UtcDatetime
from streamward.streams.models import StreamState
from streamward.streams.service import TranscodeProfile
from streamward.streams.tags import distinct_tags, normalise_tag

Tag = Annotated[str, AfterValidator(normalise_tag)]
GroupId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


class StreamCreate(ApiModel):
    tags: list[str] = Field(default_factory=list, description="Tags to put on the stream (created on use).")
    transcodes: list[TranscodeProfile] = Field(
        default_factory=list, description="Renditions to transcode into; needs the Transcoding package."
    )
    group_id: GroupId | None = Field(
        default=None, description="Groups streams for playback tokens scoped by `groupid`."
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return distinct_tags(value)

    @field_validator("transcodes")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each transcode profile may be given once")
        return value


class StreamTagsUpdate(ApiModel):
    tags: list[str] = Field(description="The stream's tags from now on (replaces them all).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return distinct_tags(value)


class Ingest(ApiModel):
    rtmp_url: str
    stream_name: str


class PlayoutRendition(ApiModel):
    rendition: str
    stream_name: str
    url: str


class StreamOut(ApiModel):
    id: uuid.UUID
    name: str
    state: StreamState
    group_id: str | None
    transcodes: list[str]
    tags: list[str]
    ingest: Ingest
    playout: list[PlayoutRendition]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class StreamPage(ApiModel):
    items: list[StreamOut]
    next_cursor: str | None


class TagOut(ApiModel):
    name: str
    streams: int = Field(description="How many streams carry the tag.")


class TagPage(ApiModel):
    items: list[TagOut]
    next_cursor: str | None


class TagRename(ApiModel):
    name: Tag = Field(description="The new name; renaming onto a tag in use merges the two.")
