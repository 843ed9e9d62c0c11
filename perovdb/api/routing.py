"""``DirectRoute``: FastAPI routes whose endpoints read the request themselves, called without FastAPI's
per-request parameter machinery.

perovdb's read endpoints take the ``Request`` (their query string is validated by one model from
``perovdb.api.params``) and at most plain string path parameters, and return a ``Response``. For them
FastAPI's request handler still resolves an empty dependency tree, collects errors and checks the return
value on every request, which cost about as much as the database query of a small page. ``DirectRoute``
calls such an endpoint with the request and its path parameters and returns its response; exception
handlers, middleware and the OpenAPI document are unchanged (the route is still an ``APIRoute``). Any
route with something else to resolve — query, header, cookie or body parameters, dependencies (its own or
those of a router it is included through), constrained or aliased path parameters, a synchronous
endpoint, a return annotation that is not a ``Response`` — keeps FastAPI's handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

#: parameter kinds a direct endpoint must not have (FastAPI would inject or resolve them)
_RESOLVED = ("query_params", "header_params", "cookie_params", "body_params", "dependencies")
_INJECTED = ("websocket_param_name", "http_connection_param_name", "response_param_name",
             "background_tasks_param_name", "security_scopes_param_name")  # fmt: skip


def is_direct(dependant: Dependant) -> bool:
    """Whether an endpoint can be called as ``endpoint(request=…, **path_params)``: async, annotated to
    return a ``Response``, plain string path parameters only (no constraints, no aliases), nothing else to
    resolve or inject."""
    call = dependant.call
    if call is None or not inspect.iscoroutinefunction(call):
        return False
    if any(getattr(dependant, name, None) for name in (*_RESOLVED, *_INJECTED)):
        return False
    try:
        returns = get_typed_return_annotation(call)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: leave the route to FastAPI
        return False
    if not (inspect.isclass(returns) and issubclass(returns, Response)):
        return False
    return all(
        param.field_info.annotation is str and not param.field_info.metadata and param.alias == param.name
        for param in dependant.path_params
    )


class DirectRoute(APIRoute):
    """An ``APIRoute`` that calls a direct endpoint (see ``is_direct``) straight from the request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        # included through a router, the route's effective dependant (with the router's dependencies) is
        # handed to FastAPI's handler through a context variable (FastAPI >= 0.16x): leave that to FastAPI
        included = getattr(routing, "_effective_route_context_var", None)
        if not is_direct(dependant) or (included is not None and included.get() is not None):
            return super().get_route_handler()
        endpoint = dependant.call
        assert endpoint is not None  # checked by is_direct
        path_names = tuple(param.name for param in dependant.path_params)
        request_name = dependant.request_param_name
        where = f"{', '.join(sorted(self.methods or ()))} {self.path}"

        async def handler(request: Request) -> Response:
            path = request.path_params
            arguments = {name: path[name] for name in path_names}
            if request_name:
                arguments[request_name] = request
            response = await endpoint(**arguments)
            if not isinstance(response, Response):
                raise TypeError(f"the endpoint of {where} returned {type(response).__name__}, not a Response")
            return response

        return handler


__all__ = ["DirectRoute", "is_direct"]
