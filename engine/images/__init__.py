"""Images: references, the content-addressed store, layer unpacking, archives, registries.

Modules (one job each):
- `reference`   parse and normalise image references with Docker's defaults.
- `manifest`    OCI / Docker media types, manifests, indexes, image configs, platform selection.
- `unpack`      stream a (gzip/zstd/plain) layer tarball into a directory, safely, computing its diff_id.
- `store`       `ImageStore`: blobs, shared unpacked layers, images and tags, import, remove, prune.
- `archive`     docker-archive (`docker save`) and OCI image-layout tarballs, in and out.
- `registry`    OCI Distribution client: auth, pull, push, progress.

Vocabulary: a *blob* is stored content named by its sha256 digest ("sha256:<hex>"); a *layer* is one
unpacked blob, a directory named by its chain id and shared by every image (and later container) that uses
it; an *image* is a manifest + config whose id is the config digest; a *tag* maps a normalised reference
("docker.io/library/nginx:latest") to an image id.
"""
