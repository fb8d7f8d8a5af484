"""Local servers that speak the documented ComfyUI and A1111 HTTP APIs (controllable from tests)."""
