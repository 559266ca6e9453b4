"""Flask views on top of the client: the chat blueprint browsers call
(``AIClient.blueprint()``), the OpenAI-compatible one
(``AIClient.openai_blueprint()``), what each takes from a request, and the
limits they count per client."""
