"""Opening the Iceberg catalog chosen by settings: embedded SQLite + local files, or REST + S3."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog

from ticklake.settings import LakeSettings

CATALOG_NAME = "ticklake"


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
        props = {"type": "rest", "uri": settings.uri}
        if settings.warehouse:
            props["warehouse"] = settings.warehouse
    # S3 properties matter whenever the warehouse is on S3, whichever catalog tracks it.
    if settings.s3_endpoint:
        # SeaweedFS and most self-hosted stores serve buckets by path, not by virtual host (stack.md).
        props["s3.endpoint"] = settings.s3_endpoint
        props["s3.path-style-access"] = "true"
    props["s3.region"] = settings.s3_region
    if settings.s3_access_key_id:
        props["s3.access-key-id"] = settings.s3_access_key_id
        props["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
    return props


def open_catalog(settings: LakeSettings, data_dir: Path) -> Catalog:
    if settings.catalog == "sql" and not settings.uri:
        # SQLite creates the file, not its folder; the local warehouse folder is created on write.
        lake_dir(data_dir).mkdir(parents=True, exist_ok=True)
    return load_catalog(CATALOG_NAME, **catalog_properties(settings, data_dir))
