"""The error hierarchy: every error knows its HTTP status, stable code and public message."""

from __future__ import annotations

from typing import ClassVar


class ImgestError(Exception):
    """Base of every error imgest raises on purpose.

    `code` is stable and machine-readable; `detail` is a human sentence safe to show a client.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    default_detail: ClassVar[str] = "The server failed to process the request."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict[str, object]:
        """RFC 9457 problem+json body for this error."""
        body: dict[str, object] = {
            "type": f"https://imgest.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        return body


class ClientError(ImgestError):
    """Something the client sent cannot be accepted (4xx)."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    default_detail = "The request could not be accepted."


# --- request shape -------------------------------------------------------------------------


class NotMultipart(ClientError):
    status = 415
    code = "not_multipart"
    title = "Not multipart/form-data"
    default_detail = "Send the images as multipart/form-data with one or more file parts."


class MalformedMultipart(ClientError):
    status = 400
    code = "malformed_multipart"
    title = "Malformed multipart body"
    default_detail = "The multipart/form-data body could not be parsed."


class RequestTooLarge(ClientError):
    status = 413
    code = "request_too_large"
    title = "Request too large"
    default_detail = "The request body is larger than the server accepts."


class RequestHeadTooLarge(ClientError):
    status = 431
    code = "request_head_too_large"
    title = "Request head too large"
    default_detail = "The request line and headers are larger than the server accepts."


class MalformedRequest(ClientError):
    """Bytes the HTTP server cannot read as an HTTP/1.1 request (answered before the app runs)."""

    status = 400
    code = "malformed_request"
    title = "Malformed HTTP request"
    default_detail = "The request is not valid HTTP/1.1."


class UnsupportedContentEncoding(ClientError):
    """A request body sent with a content coding (gzip, br, ...): bodies are never decoded."""

    status = 415
    code = "unsupported_content_encoding"
    title = "Unsupported Content-Encoding"
    default_detail = "Request bodies are read as sent; send them without a Content-Encoding."


class FileTooLarge(ClientError):
    status = 413
    code = "file_too_large"
    title = "File too large"
    default_detail = "The file is larger than the server accepts."


class FieldTooLarge(ClientError):
    status = 413
    code = "field_too_large"
    title = "Text field too large"
    default_detail = "A text field is larger than the server accepts."


class TooManyFields(ClientError):
    status = 422
    code = "too_many_fields"
    title = "Too many fields"
    default_detail = "The request has more text fields than the server accepts."


class TooManyFiles(ClientError):
    status = 422
    code = "too_many_files"
    title = "Too many files"
    default_detail = "The request has more file parts than the server accepts."


class NoFiles(ClientError):
    status = 422
    code = "no_files"
    title = "No files"
    default_detail = "The request has no file part; send each image as a file part."


class InvalidParameter(ClientError):
    status = 422
    code = "invalid_parameter"
    title = "Invalid parameter"
    default_detail = "A query or form parameter has an invalid value."


# --- image content -------------------------------------------------------------------------


class EmptyFile(ClientError):
    status = 422
    code = "empty_file"
    title = "Empty file"
    default_detail = "The file has no bytes."


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported image format"
    default_detail = (
        "The file is not an image in a supported format "
        "(JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC/HEIF, AVIF)."
    )


class ImageTooManyPixels(ClientError):
    status = 422
    code = "image_too_many_pixels"
    title = "Image has too many pixels"
    default_detail = "The image's dimensions exceed the server's pixel limit."


class ImageTooManyFrames(ClientError):
    status = 422
    code = "image_too_many_frames"
    title = "Image has too many frames"
    default_detail = "The animated image has more frames than the server accepts."


class ImageTooComplex(ClientError):
    status = 422
    code = "image_too_complex"
    title = "Image too complex to decode"
    default_detail = (
        "The image needs more decoding passes (progressive JPEG scans) than the server accepts."
    )


class ImageTooMuchMemory(ClientError):
    status = 422
    code = "image_too_much_memory"
    title = "Image needs too much memory to decode"
    default_detail = (
        "Decoding the image would take more memory than the server allows for one image."
    )


class UnsupportedPixelFormat(UnsupportedMediaType):
    code = "unsupported_pixel_format"
    title = "Unsupported pixel format"
    default_detail = (
        "The image's format is supported, but not its pixel layout (sample type, bit depth "
        "or channel count)."
    )


class ImageTruncated(ClientError):
    status = 422
    code = "image_truncated"
    title = "Image truncated"
    default_detail = "The image data ends before the image is complete."


class ImageCorrupt(ClientError):
    status = 422
    code = "image_corrupt"
    title = "Image corrupt"
    default_detail = "The image data is corrupt and cannot be decoded."


# --- lookups -------------------------------------------------------------------------------


class NotFound(ClientError):
    status = 404
    code = "not_found"
    title = "Not found"
    default_detail = "No such resource."


class ImageNotFound(NotFound):
    code = "image_not_found"
    title = "Image not found"
    default_detail = "No image with this id is stored."


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"
    title = "Pipeline not found"
    default_detail = "No such pipeline, or no rendition of this image for it."


# --- the server's own dependencies ---------------------------------------------------------


class ServiceUnavailable(ImgestError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    default_detail = "The service is temporarily unavailable; retry later."


class StorageUnavailable(ServiceUnavailable):
    code = "storage_unavailable"
    title = "Storage unavailable"
    default_detail = "Blob storage is unavailable; nothing was stored. Retry later."


class CatalogUnavailable(ServiceUnavailable):
    code = "catalog_unavailable"
    title = "Catalog unavailable"
    default_detail = "The catalog database is unavailable; nothing was recorded. Retry later."


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"
    title = "Model unavailable"
    default_detail = "The scoring model is not loaded; retry later."


# --- idempotency keys (issue 5) -----------------------------------------------------------


class IdempotencyKeyInvalid(ClientError):
    status = 400
    code = "idempotency_key_invalid"
    title = "Invalid Idempotency-Key"
    default_detail = (
        "The Idempotency-Key header must be 1 to 255 printable ASCII characters "
        "(optionally a quoted string)."
    )


class IdempotencyKeyReused(ClientError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused"
    default_detail = (
        "This Idempotency-Key was already used for a different request; "
        "use a new key for new content."
    )


class IdempotencyKeyInFlight(ClientError):
    status = 409
    code = "idempotency_key_in_flight"
    title = "Request with this Idempotency-Key in progress"
    default_detail = (
        "A request with this Idempotency-Key is still being processed; retry in a moment "
        "to get its response."
    )


# --- auth, backpressure and timeouts (issue 6) ----------------------------------------------


class Unauthorized(ClientError):
    """No usable credentials; answered with `WWW-Authenticate: Bearer`."""

    status = 401
    code = "auth_required"
    title = "Authentication required"
    default_detail = "Send an API key as 'Authorization: Bearer <key>'."


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid API key"
    default_detail = "The API key is unknown, malformed or revoked."


class InsufficientScope(ClientError):
    status = 403
    code = "insufficient_scope"
    title = "Insufficient scope"
    default_detail = "The API key lacks the scope this request needs."


class HostNotAllowed(ClientError):
    """The `Host` header names a host the server does not answer to (DNS rebinding)."""

    status = 400
    code = "host_not_allowed"
    title = "Host not allowed"
    default_detail = (
        "This server does not answer to that Host; list it in IMGEST_ALLOWED_HOSTS if it should."
    )


class CrossOriginRefused(ClientError):
    """A browser sent a state-changing request from a page on another origin."""

    status = 403
    code = "cross_origin_refused"
    title = "Cross-origin request refused"
    default_detail = (
        "State-changing requests from another origin are refused; list the origin in "
        "IMGEST_CORS_ORIGINS if it should be allowed."
    )


class RequestTimeout(ClientError):
    status = 408
    code = "request_timeout"
    title = "Request timeout"
    default_detail = "The request body arrived too slowly; send it again faster."


class RateLimited(ClientError):
    """Per-client cap reached; answered with `Retry-After`."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"
    default_detail = "This client has too many uploads in progress; retry later."


class ServerBusy(ServiceUnavailable):
    code = "server_busy"
    title = "Server busy"
    default_detail = "The server has too many uploads in progress; retry later."


class ConfigError(Exception):
    """Invalid configuration found at start-up; the message names the bad key."""


# --- corpus jobs and devices (issue 4) -----------------------------------------------------


class JobError(Exception):
    """A corpus job (rescore, compare, export) cannot run as asked; the message says why."""


class DeviceUnavailable(ConfigError):
    """The scoring device asked for (e.g. cuda) is not usable here; never silently replaced."""


class MissingDependency(ConfigError):
    """An optional dependency a command needs is not installed; the message names the extra."""


class CatalogNotFound(ConfigError):
    """The SQLite catalog or local blob directory the settings name does not exist.

    Only `imgest serve` and `imgest init` create them; every other command refuses, so a run
    from the wrong folder cannot start an empty corpus there.
    """


# --- models, labels, scoring queue (issue 4) -----------------------------------------------


class UnknownModel(ClientError):
    status = 422
    code = "unknown_model"
    title = "Unknown model"
    default_detail = "No registered model matches NAME[@VERSION]."


class ModelPipelineMismatch(ClientError):
    status = 422
    code = "model_pipeline_mismatch"
    title = "Model and pipeline do not fit"
    default_detail = "The pipeline's model-input size is not the size the model takes."


class InvalidLabel(ClientError):
    status = 422
    code = "invalid_label"
    title = "Invalid label"
    default_detail = "A label must be 1 to 200 printable characters."


class ScoringQueueFull(ServiceUnavailable):
    code = "scoring_queue_full"
    title = "Scoring queue full"
    default_detail = "The scoring queue is full; nothing was recorded. Retry shortly."


# --- similar images (issue 17) --------------------------------------------------------------


class NearDuplicate(ClientError):
    """IMGEST_NEAR_DUPLICATES=reject: the upload looks like an image already stored."""

    status = 409
    code = "near_duplicate"
    title = "Near-duplicate of a stored image"
    default_detail = "The file is a near-duplicate of an image already stored; it was not stored."


class NoEmbedding(ClientError):
    """A similarity search where the model gives no embedding, or the image has none yet."""

    status = 409
    code = "no_embedding"
    title = "No embedding"
    default_detail = "The image has no embedding by the active model yet; run `imgest rescore`."
