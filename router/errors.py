"""tierwise's exception hierarchy; each error maps to one OpenAI-style HTTP error."""

from __future__ import annotations


class TierwiseError(Exception):
    """Base of every error tierwise raises on purpose."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_openai(self) -> dict[str, object]:
        """The body of an OpenAI-style error response."""
        return {"error": {"message": self.message, "type": self.error_type,
                          "param": self.param, "code": self.code}}


class InvalidRequestError(TierwiseError):
    """The request body is malformed; `param` names the field (e.g. ``messages[2].role``)."""

    status_code = 400
    error_type = "invalid_request_error"


class NoEligibleTierError(InvalidRequestError):
    """No tier of the policy can take this request (context window, tools, images)."""

    code = "no_eligible_tier"


class UpstreamError(TierwiseError):
    """Every tier tried failed; `attempts` lists what happened at each."""

    status_code = 502
    error_type = "upstream_error"

    def __init__(self, message: str, *, status_code: int = 502,
                 attempts: list[str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.attempts = attempts or []


class ConfigurationError(TierwiseError):
    """The policy or environment cannot serve this request (e.g. an API key variable is unset)."""

    status_code = 500
    error_type = "configuration_error"
