"""Opening the Iceberg catalog chosen by settings: embedded SQLite + local files, or REST + S3.

**Production: a REST catalog on S3** (SeaweedFS in deploy/compose.yaml; docs/lake.md, "Production
catalog"). What it takes, found against a real ``weed mini`` (tests/lake/test_rest_catalog.py):

- ``lake.warehouse`` names the catalog: SeaweedFS serves one catalog per S3 *table bucket* and
  selects it by ``warehouse=s3://<table-bucket>`` (anything after the bucket is ignored: tables live
  at ``s3://<table-bucket>/<namespace>/<table>``);
- the catalog authenticates with OAuth2 client credentials; SeaweedFS takes the S3 key pair as such;
- the catalog's answer to a table load carries its own ``s3.endpoint``, which pyiceberg lets win over
  ours: SeaweedFS advertises ``http://<-ip>:<s3 port>`` (or ``-s3.externalUrl``), so its ``-ip``
  must be a name the offloader can reach;
- an unreachable catalog or store raises ``OSError``: pyarrow's S3 errors are ``OSError``, and so are
  requests' (``requests.RequestException``). pyarrow gives up on a refused connection after 3 tries in
  about 2 s; a hung store (accepting connections, answering nothing) is bounded by the timeouts set
  here, ``lake.io_timeout_s`` per try. pyiceberg 0.12 sets no timeout at all on REST calls (a hung
  catalog would block the offloader forever): ``_BoundedRestCatalog`` adds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ticklake.settings import LakeSettings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

CATALOG_NAME = "ticklake"
# A property of our own (pyiceberg has none): the REST client's timeout, see _BoundedRestCatalog.
HTTP_TIMEOUT_PROPERTY = "ticklake.http-timeout-s"
# Opening a TCP connection on a LAN or to a cloud store takes milliseconds; a store that does not
# accept one within this is down, and failing fast lets the next run (or the retry) try again.
CONNECT_TIMEOUT_S = 3.0


def lake_dir(data_dir: Path) -> Path:
    return (data_dir / "lake").resolve()


def catalog_properties(settings: LakeSettings, data_dir: Path) -> dict[str, str]:
    """The pyiceberg properties of the catalog ``settings`` name (secrets included: never log them)."""
    if settings.catalog == "sql":
        root = lake_dir(data_dir)
        props = {
            "type": "sql",
            "uri": settings.uri or f"sqlite:///{root / 'catalog.db'}",
            "warehouse": settings.warehouse or (root / "warehouse").as_uri(),
        }
    else:
        if not settings.uri:
            raise ValueError("lake.uri must name the REST catalog when lake.catalog is 'rest'")
        props = {"type": "rest", "uri": settings.uri, HTTP_TIMEOUT_PROPERTY: str(settings.io_timeout_s)}
        if settings.warehouse:
            props["warehouse"] = settings.warehouse
        credential = settings.rest_credential.get_secret_value()
        if not credential and settings.s3_access_key_id:
            credential = f"{settings.s3_access_key_id}:{settings.s3_secret_access_key.get_secret_value()}"
        if credential:
            props["credential"] = credential
            # The spec's token endpoint, named explicitly: pyiceberg warns when it has to assume it.
            props["oauth2-server-uri"] = f"{settings.uri.rstrip('/')}/v1/oauth/tokens"
    # S3 properties matter whenever the warehouse is on S3, whichever catalog tracks it.
    if settings.s3_endpoint:
        # SeaweedFS and most self-hosted stores serve buckets by path, not by virtual host (stack.md).
        props["s3.endpoint"] = settings.s3_endpoint
        props["s3.path-style-access"] = "true"
    props["s3.region"] = settings.s3_region
    if settings.s3_access_key_id:
        props["s3.access-key-id"] = settings.s3_access_key_id
        props["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
    # pyarrow's S3 client: the request timeout is a no-progress bound (no byte for that long), not a
    # cap on a transfer, so large files upload however long they take while bytes flow. Each S3 call
    # is tried 3 times (pyarrow's default): a hung store fails an offload in about 3 x io_timeout_s.
    props["s3.connect-timeout"] = str(CONNECT_TIMEOUT_S)
    props["s3.request-timeout"] = str(settings.io_timeout_s)
    return props


def open_catalog(settings: LakeSettings, data_dir: Path) -> Catalog:
    # pyiceberg (~24 MB of memory in a process) is imported on the first catalog opened, not before.
    from pyiceberg.catalog import load_catalog

    from ticklake.lake.rest_catalog import _BoundedRestCatalog

    if settings.catalog == "rest":
        # Not load_catalog: it would also merge ~/.pyiceberg.yaml and PYICEBERG_* variables into
        # what settings say.
        return _BoundedRestCatalog(CATALOG_NAME, **catalog_properties(settings, data_dir))
    if not settings.uri:
        # SQLite creates the file, not its folder; the local warehouse folder is created on write.
        lake_dir(data_dir).mkdir(parents=True, exist_ok=True)
    return load_catalog(CATALOG_NAME, **catalog_properties(settings, data_dir))
