"""Download an archive with an md5 check, and extract a tar file without path traversal."""

from __future__ import annotations

import hashlib
import logging
import pathlib
import tarfile
import urllib.error
import urllib.request

from convnas.errors import DatasetError

__all__ = ["download_archive", "extract_tar", "file_md5"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def file_md5(path: pathlib.Path) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_archive(
    url: str, destination: pathlib.Path, *, md5: str, timeout: float = 60.0
) -> pathlib.Path:
    """Fetch ``url`` into ``destination`` unless a file with the right md5 is already there.

    The data goes to ``<destination>.part`` first and is renamed only once its md5 matches, so an
    interrupted or tampered download never looks complete.

    Raises:
        DatasetError: the download failed or its md5 differs from ``md5``.
    """
    if destination.is_file() and file_md5(destination) == md5:
        logger.info("using the verified archive %s", destination)
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    logger.info("downloading %s to %s", url, destination)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"could not download {url}: {reason}") from exc
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"the md5 of the file downloaded from {url} is {digest.hexdigest()}, but {md5} was "
            "expected; the file was deleted (a truncated or altered download)"
        )
    part.replace(destination)
    return destination


def extract_tar(archive: pathlib.Path, destination: pathlib.Path) -> None:
    """Extract ``archive`` under ``destination``, refusing links, devices and escaping paths.

    Raises:
        DatasetError: the archive is unreadable or holds a member that is not a regular file or
            folder, or whose path leaves ``destination``.
    """
    dest = destination.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, dest, archive)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above are the only guard
                tar.extractall(dest, members=members)  # noqa: S202
    except tarfile.TarError as exc:
        raise DatasetError(f"cannot extract {archive}: {exc}") from exc


def _check_member(member: tarfile.TarInfo, dest: pathlib.Path, archive: pathlib.Path) -> None:
    if not (member.isfile() or member.isdir()):
        raise DatasetError(
            f"refusing to extract {member.name!r} from {archive}: only regular files and folders "
            "are allowed, not links or devices"
        )
    target = (dest / member.name).resolve()
    if pathlib.PurePath(member.name).is_absolute() or not target.is_relative_to(dest):
        raise DatasetError(
            f"refusing to extract {member.name!r} from {archive}: its path leaves {dest}"
        )
