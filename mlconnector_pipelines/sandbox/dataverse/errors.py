"""Dataverse's refusals: `{"error": {"code": "0x…", "message": "…"}}` with the documented codes.

Codes and messages are the Web service error codes list's, or the example responses of the Web API
articles (docs/vendor-facts/dataverse-facts.md names each source).
"""

from __future__ import annotations


class DataverseError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(logical: str, key: str) -> DataverseError:
    return DataverseError(404, "0x80040217", f"{logical} With Id = {key} Does Not Exist")


def no_segment(segment: str) -> DataverseError:
    return DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def no_resource(url: str) -> DataverseError:
    return DataverseError(404, "", f"No HTTP resource was found that matches the request URI '{url}'.")


def no_property(name: str, type_name: str) -> DataverseError:
    return DataverseError(400, "0x0", f"Could not find a property named '{name}' on type '{type_name}'.")


def invalid_property(name: str, type_name: str) -> DataverseError:
    return DataverseError(
        400,
        "0x0",
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
        f"Invalid property '{name}' was found in entity '{type_name}'. ---> Microsoft.OData.ODataException: "
        "Does not support untyped value in non-open type.",
    )


def payload(entity_set: str, inner: str) -> DataverseError:
    """0x80048d19: the OData reader refused the body (an undeclared navigation property, a literal of the wrong type)."""
    return DataverseError(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on this "
        "error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  "
        f"InnerException : Microsoft.OData.ODataException: {inner}",
    )


def undeclared_navigation(entity_set: str, name: str) -> DataverseError:
    return payload(
        entity_set,
        f"An undeclared property '{name}' which only has property annotations in the payload but no property value "
        "was found in the payload. In OData, only declared navigation properties and declared named streams can be "
        "represented as properties without values.",
    )


def not_supported(message: str) -> DataverseError:
    """0x80060888: a query option or shape the Web API does not support."""
    return DataverseError(400, "0x80060888", message)


def invalid_state(message: str = "The object is not in a valid state to perform this operation.") -> DataverseError:
    return DataverseError(400, "0x80040233", message)


def invalid_state_status() -> DataverseError:
    return DataverseError(
        400,
        "0x80048408",
        "State code is invalid or state code is valid but status code is invalid for a specified state code.",
    )


def bad_argument(message: str) -> DataverseError:
    return DataverseError(400, "0x80040203", message)


CONCURRENCY_MISMATCH = (
    "0x80060882",
    "The version of the existing record doesn't match the RowVersion property provided.",
)
DUPLICATE_RECORD = ("0x80040237", "A record with matching key values already exists.")
