"""The directory sensor's config model (`sensors.NAME: {type: directory, ...}`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from eventflow.plugin import Duration, Model, SensorConfig

DEFAULT_IGNORE = ("*.tmp", ".*", "*.part", "*.inprogress*", "*~", "*.swp")


class Readiness(Model):
    """When a file is complete: `{stable_for: DURATION}` or `{marker: FILENAME}`."""

    stable_for: Duration | None = Field(
        default=None,
        description="Ready once size and mtime have not changed for this long; a file"
        " renamed into place is ready at once.",
    )
    marker: str | None = Field(
        default=None,
        description="Files of a directory are ready once it holds this file (e.g. `_SUCCESS`);"
        " then they and the marker are emitted.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> Readiness:
        if (self.stable_for is None) == (self.marker is None):
            raise ValueError(
                "write exactly one of `stable_for` or `marker`; e.g. `ready: {stable_for: 2s}`"
                " or `ready: {marker: _SUCCESS}`"
            )
        if self.marker is not None and (self.marker in ("", ".", "..") or "/" in self.marker):
            raise ValueError("`marker` is a file name, not a path; e.g. `marker: _SUCCESS`")
        return self


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
        default_factory=lambda: Readiness(stable_for=timedelta(seconds=1)),
        description="When a file is complete: `{stable_for: 1s}` (default) or"
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
