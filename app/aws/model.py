"""AWS's service models, as botocore publishes them: which operations exist, their shapes."""

from __future__ import annotations

from functools import cache

from botocore.model import OperationModel, ServiceModel
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
