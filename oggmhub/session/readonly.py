"""A read-only fsspec filesystem rooted at a dataset.

:class:`ReadOnlyFileSystem` is fsspec's ``DirFileSystem`` (paths relative to the
dataset's root, everything delegated to the filesystem underneath) with every operation
that could change the dataset refused *before* anything reaches the store::

    >>> fs.pipe("x.txt", b"...")
    PermissionError: [Errno 30] dataset 'oggm-mirror' is read-only: pipe 'x.txt' refused

The error is a :class:`PermissionError` with ``errno.EROFS``, so code that catches
either ``PermissionError`` or ``OSError`` and checks ``errno`` sees what a read-only
mount would give it.
"""

from __future__ import annotations

import errno

from fsspec.implementations.dirfs import DirFileSystem

# Every AbstractFileSystem / DirFileSystem method that writes, deletes, renames or
# creates, in its sync and async spelling.
WRITE_METHODS = (
    "pipe", "pipe_file", "put", "put_file", "upload", "write_text", "write_bytes",
    "rm", "rm_file", "delete", "rmdir", "_rm", "_rm_file", "_rmdir",
    "cp", "cp_file", "copy", "_cp_file", "_copy",
    "mv", "move", "rename", "_mv",
    "mkdir", "makedir", "makedirs", "mkdirs", "_mkdir", "_makedirs",
    "touch", "_touch", "setxattrs", "chmod", "link", "symlink", "ln",
    "_pipe", "_pipe_file", "_put", "_put_file", "start_transaction", "end_transaction",
)


class DatasetReadOnlyError(PermissionError):
    """A write to a dataset was refused; ``errno`` is ``EROFS``."""

    def __init__(self, dataset, operation, path=None):
        target = f" {path!r}" if path not in (None, "") else ""
        super().__init__(
            errno.EROFS, f"dataset {dataset!r} is read-only: {operation}{target} refused"
        )
        self.dataset = dataset
        self.operation = operation


def _refuse(name):
    operation = name.lstrip("_")
    # put(lpath, rpath): the dataset path is the second argument
    where = 1 if operation in ("put", "put_file", "upload") else 0

    def refused(self, *args, **kwargs):
        path = args[where] if len(args) > where else kwargs.get("rpath", kwargs.get("path"))
        raise DatasetReadOnlyError(self.dataset, operation, _first_path(path))

    refused.__name__ = name
    refused.__doc__ = f"Refused: datasets are read-only ({name})."
    return refused


def _first_path(path):
    if isinstance(path, (list, tuple)):
        return path[0] if path else None
    return path


class ReadOnlyFileSystem(DirFileSystem):
    """``DirFileSystem`` over ``fs`` rooted at ``path``, refusing every write.

    ``dataset`` names the dataset in error messages.
    """

    protocol = "oggmhub-dataset"
    # never share instances through fsspec's instance cache: two datasets over the same
    # bucket differ in name and root
    cachable = False

    def __init__(self, dataset, path, fs, **kwargs):
        super().__init__(path=path, fs=fs, **kwargs)
        self.dataset = dataset

    def open(self, path, mode="rb", *args, **kwargs):
        if set(mode) - set("rbt"):
            raise DatasetReadOnlyError(self.dataset, f"open with mode {mode!r}", path)
        return super().open(path, mode, *args, **kwargs)

    async def open_async(self, path, mode="rb", *args, **kwargs):
        if set(mode) - set("rbt"):
            raise DatasetReadOnlyError(self.dataset, f"open with mode {mode!r}", path)
        return await super().open_async(path, mode, *args, **kwargs)

    @property
    def transaction(self):
        raise DatasetReadOnlyError(self.dataset, "transaction")

    def __repr__(self):
        return f"<read-only dataset {self.dataset!r} at {self.path!r} over {self.fs!r}>"


for _name in WRITE_METHODS:
    setattr(ReadOnlyFileSystem, _name, _refuse(_name))
del _name
