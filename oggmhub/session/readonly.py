"""A read-only fsspec filesystem rooted at a dataset.

:class:`ReadOnlyFileSystem` is fsspec's ``DirFileSystem`` (paths relative to the
dataset's root, everything delegated to the filesystem underneath) with every operation
that could change the dataset refused *before* anything reaches the store::

    >>> fs.pipe("x.txt", b"...")
    PermissionError: [Errno 30] dataset 'oggm-mirror' is read-only: pipe 'x.txt' refused

The error is a :class:`PermissionError` with ``errno.EROFS``, so code that catches
either ``PermissionError`` or ``OSError`` and checks ``errno`` sees what a read-only
mount would give it.

Every path is relative to the dataset's root and stays inside it: a path whose ``..``
parts climb above the root (``../../etc/hostname``) is refused in every method (open,
cat, ls, glob, find, info, ...) with :class:`DatasetPathError`, before anything is read.
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


class DatasetPathError(ValueError):
    """A path that leaves the dataset (``..`` above its root); nothing was read."""

    def __init__(self, dataset, path):
        super().__init__(
            f"dataset {dataset!r}: the path {path!r} leaves the dataset; paths are relative to the "
            "dataset's root and may not climb above it with '..'"
        )
        self.dataset = dataset
        self.path = path


def leaves_root(path):
    """Whether ``path`` (relative to a root) climbs above that root with ``..`` parts."""
    depth = 0
    for part in str(path).replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def check_inside(dataset, path):
    """Raise :class:`DatasetPathError` if ``path`` (a string, or a list or dict of them)
    leaves the dataset ``dataset``."""
    paths = [path] if isinstance(path, str) else list(path) if isinstance(path, (list, tuple, set, dict)) else []
    for p in paths:
        if isinstance(p, str) and leaves_root(p):
            raise DatasetPathError(dataset, p)


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
        self.dataset = dataset
        super().__init__(path=path, fs=fs, **kwargs)

    # DirFileSystem keeps the filesystem underneath as ``.fs`` and hands it to anyone who
    # asks; here ``.fs`` is a read-only view of it, so ``ro.fs.pipe(...)`` is refused too.
    @property
    def fs(self):
        return self.__dict__["_oggmhub_view"]

    @fs.setter
    def fs(self, value):
        self.__dict__["_oggmhub_view"] = value if isinstance(value, ReadOnlyView) else ReadOnlyView(self.dataset, value)

    # fsspec keeps the constructor's arguments (to pickle and to compare instances): the
    # filesystem underneath is kept there as its view too
    @property
    def storage_args(self):
        return self.__dict__.get("_oggmhub_args", ())

    @storage_args.setter
    def storage_args(self, args):
        self.__dict__["_oggmhub_args"] = tuple(self._viewed(a) for a in args)

    @property
    def storage_options(self):
        return self.__dict__.get("_oggmhub_options", {})

    @storage_options.setter
    def storage_options(self, options):
        self.__dict__["_oggmhub_options"] = {k: self._viewed(v) for k, v in options.items()}

    def _viewed(self, value):
        from fsspec.spec import AbstractFileSystem

        return ReadOnlyView(self.dataset, value) if isinstance(value, AbstractFileSystem) else value

    def _join(self, path):  # every method turns its paths into the store's through here
        check_inside(self.dataset, path)
        return super()._join(path)

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

# what ReadOnlyView refuses besides WRITE_METHODS: ways to a writable object or a write
_VIEW_REFUSED = frozenset(("get_mapper", "transaction", "_open", "open_files", "_fs", "fs", "storage_args",
                           "storage_options"))


class ReadOnlyView:
    """The filesystem under a dataset, with its writes refused (see ``ReadOnlyFileSystem.fs``).

    Reads are passed through; writes, write modes and ways to the object underneath
    (``get_mapper``, a nested ``.fs``, ``__dict__``) raise :class:`DatasetReadOnlyError`;
    attributes that are filesystems come back as views too. The filesystem itself is held
    in a closure (:func:`read_only_view`), not in an attribute that would hand it out.
    """

    __slots__ = ()

    def __new__(cls, dataset, target):
        return read_only_view(dataset, target)


def read_only_view(dataset, target):
    """A :class:`ReadOnlyView` of ``target`` (an fsspec filesystem)."""
    from fsspec.spec import AbstractFileSystem

    def __getattr__(self, name):
        if name.startswith("__"):  # __dict__ and the like: not handed out (hasattr sees no attribute)
            raise AttributeError(name)
        if name in WRITE_METHODS or name in _VIEW_REFUSED:
            raise DatasetReadOnlyError(dataset, f"{name} on the filesystem under the dataset")
        if name in ("open", "open_async"):
            real = getattr(target, name)

            def opened(path, mode="rb", *args, **kwargs):
                if set(mode) - set("rbt"):
                    raise DatasetReadOnlyError(dataset, f"open with mode {mode!r}", path)
                return real(path, mode, *args, **kwargs)

            return opened
        value = getattr(target, name)
        return read_only_view(dataset, value) if isinstance(value, AbstractFileSystem) else value

    def __setattr__(self, name, value):
        raise DatasetReadOnlyError(dataset, f"setting {name}")

    def __reduce__(self):  # pickled (e.g. to a Dask worker) as a view, never as the filesystem
        return read_only_view, (dataset, target)

    def __repr__(self):
        return f"<read-only view of {target!r}>"

    view = type("ReadOnlyView", (ReadOnlyView,), {
        "__slots__": (), "__getattr__": __getattr__, "__setattr__": __setattr__, "__reduce__": __reduce__,
        "__repr__": __repr__, "__new__": object.__new__,
    })
    return object.__new__(view)
