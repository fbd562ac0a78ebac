"""The directory sensor's config model (`sensors.NAME: {type: directory, ...}`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from eventflow.plugin import Duration, Model, SensorConfig

DEFAULT_IGNORE = ("*.tmp", ".*", "*.part", "*.inprogress*", "*~", "*.swp")


DEFAULT_STABLE_FOR = timedelta(seconds=1)
DEFAULT_MARKERS = ("_SUCCESS",)


class Readiness(Model):
    """When a file is complete: `{stable_for: DURATION, markers: [NAME, ...]}` or
    `{marker: FILENAME}`."""

    stable_for: Duration | None = Field(
        default=None,
        description="Ready once size and mtime have not changed for this long (default 1s);"
        " a file renamed into place is ready at once.",
    )
    markers: tuple[str, ...] = Field(
        default=DEFAULT_MARKERS,
        description="File names that are ready as soon as they appear, without the"
        " `stable_for` wait: a commit marker is written empty and whole (Flink's and Spark's"
        " `_SUCCESS`). `[]` makes them wait like any other file.",
    )
    marker: str | None = Field(
        default=None,
        description="Files of a directory are ready once it holds this file (e.g. `_SUCCESS`);"
        " then they and the marker are emitted.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> Readiness:
        if self.marker is not None and (
            self.stable_for is not None or "markers" in self.model_fields_set
        ):
            raise ValueError(
                "`marker` holds files until it arrives; it does not go with `stable_for` or"
                " `markers`: write `ready: {marker: _SUCCESS}` or"
                " `ready: {stable_for: 2s, markers: [_SUCCESS]}`"
            )
        for name in (self.marker, *self.markers):
            if name is not None and (name in ("", ".", "..") or "/" in name):
                raise ValueError("a marker is a file name, not a path; e.g. `_SUCCESS`")
        return self

    @property
    def wait(self) -> timedelta:
        """How long a file written in place must stay unchanged (none in marker mode)."""
        if self.marker is not None:
            return timedelta(0)
        return DEFAULT_STABLE_FOR if self.stable_for is None else self.stable_for


class DirectorySensorConfig(SensorConfig):
    """`{type: directory, path: DIR}`: files that land under a local directory."""

    path: str = Field(description="The directory to watch, relative to the pipeline file.")
    include: tuple[str, ...] = Field(
        default=("**",),
        description="Globs of the files to observe, matched against the path relative to"
        " `path` with `/`; `**` spans directories and a glob without `/` matches at any depth.",
    )
    exclude: tuple[str, ...] = Field(default=(), description="Globs of files not to observe.")
    ignore: tuple[str, ...] = Field(
        default=DEFAULT_IGNORE,
        description="Globs of temporary names, matched against the name of every directory"
        " and file on the path: hidden directories and files being written (Flink's"
        " `.part-….inprogress.…`) are never observed.",
    )
    ready: Readiness = Field(
        default_factory=Readiness,
        description="When a file is complete: `{stable_for: 1s, markers: [_SUCCESS]}`"
        " (default: files wait 1s unchanged, `_SUCCESS` is ready when it appears) or"
        " `{marker: _SUCCESS}`.",
    )
    recursive: bool = Field(default=True, description="Watch subdirectories too.")
    polling: bool = Field(
        default=False,
        description="Poll instead of using the kernel's notifications (inotify): needed on"
        " network filesystems (NFS, SMB), where notifications miss remote changes.",
    )
    poll_interval: Duration | None = Field(
        default=None,
        description="With `polling: true`, how often the tree is polled (default 2s);"
        " otherwise how often it is rescanned as a safety net against lost notifications"
        " (default 30s; `0s` turns the rescan off).",
    )

    @model_validator(mode="after")
    def _polling_interval(self) -> DirectorySensorConfig:
        if self.polling and self.poll_interval is not None and not self.poll_interval:
            raise ValueError("`polling: true` needs a `poll_interval` above 0s; e.g. 2s")
        return self

    @property
    def interval(self) -> timedelta:
        """The effective ``poll_interval``."""
        if self.poll_interval is not None:
            return self.poll_interval
        return timedelta(seconds=2 if self.polling else 30)
