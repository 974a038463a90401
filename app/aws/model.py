"""AWS's service models, as botocore publishes them: which operations exist, their shapes."""

from __future__ import annotations

from functools import cache

from botocore.model import OperationModel, ServiceModel, Shape
from botocore.session import get_session

from domain.errors import UnknownOperationError


@cache
def service_model(service: str) -> ServiceModel:
    return get_session().get_service_model(service)


def operation_model(service: str, name: str) -> OperationModel:
    model = service_model(service)
    if name not in model.operation_names:
        raise UnknownOperationError("")
    return model.operation_model(name)


# AWS's ValidationException lists an enum's values in an order of its own, which is not
# always the model's. Where AWS's answer was recorded (localstack's
# tests/aws/services/kms/test_kms.snapshot.json, 2023-04: CreateKey's keySpec and keyUsage,
# GenerateMac's and VerifyMac's macAlgorithm), its order is kept; values the recording
# predates follow it in the model's order.
_AWS_ENUM_ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("kms", "MacAlgorithmSpec"): ("HMAC_SHA_384", "HMAC_SHA_256", "HMAC_SHA_224", "HMAC_SHA_512"),
    ("kms", "KeyUsageType"): ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC"),
    ("kms", "KeySpec"): (
        "RSA_2048",
        "ECC_NIST_P384",
        "ECC_NIST_P256",
        "ECC_NIST_P521",
        "HMAC_384",
        "RSA_3072",
        "ECC_SECG_P256K1",
        "RSA_4096",
        "SYMMETRIC_DEFAULT",
        "HMAC_256",
        "HMAC_224",
        "HMAC_512",
    ),
}


def enum_as_listed(service: str, shape: Shape) -> list[str]:
    """An enum shape's values in the order AWS lists them in a ValidationException."""
    values: list[str] = list(shape.enum)  # type: ignore[attr-defined]
    recorded = [v for v in _AWS_ENUM_ORDER.get((service, shape.name), ()) if v in values]
    return recorded + [v for v in values if v not in recorded]
