"""AWS API errors as one line a person can act on, shared by the operations commands."""

from botocore.exceptions import ClientError


def client_error_text(error: ClientError) -> str:
    """`Operation: Code: message`, e.g. `DescribeImages: RepositoryNotFoundException: ...`."""
    detail = error.response.get("Error", {})
    return f"{error.operation_name}: {detail.get('Code', '?')}: {detail.get('Message', '').strip()}"
