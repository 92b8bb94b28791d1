"""IPFS building blocks for the ipfs:// handler: CIDs, verified blocks, CAR files, dag-pb, UnixFS, the importer and
the gateway semantics. Depends only on multiformats, mmh3 and the standard library."""


class IpfsError(Exception):
    """Base of this bundle's errors; ``status`` is the HTTP status a gateway answers."""

    status = 500


class InvalidCID(IpfsError):
    status = 400


class BlockNotFound(IpfsError):
    status = 404


class NoSuchPath(BlockNotFound):
    """The DAG is here, but the path names nothing in it (where ``_redirects`` rules apply)."""


class CorruptBlock(IpfsError):
    status = 502


class MalformedNode(IpfsError):
    status = 502
