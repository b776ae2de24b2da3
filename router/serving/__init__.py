"""The ASGI surfaces: the OpenAI-compatible proxy, the middleware, and the guard in front."""
