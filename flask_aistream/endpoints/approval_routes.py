"""The blueprint's approval routes: ``POST <prefix>/approvals/<id>`` (the
``aistream`` format's channel) and useChat's approval responses (the
``vercel`` format's), each decision checked against what the server stored
(:mod:`flask_aistream.approvals`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from flask import Response, jsonify, request

from ..approvals import MAX_REASON, decide, decided_calls
from ..calls import OnFinish, Owner, call_options
from ..formats.agui import agui_empty_run
from ..formats.vercel import denied_stream
from ..parts import JSONObject
from ..resume import owner_key
from ..tools import Tool
from .agui_input import RunInput
from .chat_input import BadInput, UIConversation, json_body
from .limits import within_limits

if TYPE_CHECKING:
    from .chat import Endpoint


@dataclass
class ApprovalRoutes:
    """What the routes need of their blueprint: its per-app endpoint, the
    current user, its authorization, its tools, hook and answer options."""

    endpoint: Callable[[], Endpoint]
    owner: Callable[[], Owner]
    forbidden: Callable[[], tuple[Response, int] | None]
    tools: Iterable[Tool[object] | JSONObject] | None
    hook: OnFinish | None
    answer_options: JSONObject

    def decision(self, approval_id: str) -> Response | tuple[Response, int]:
        """A person's decision on a call that waits for approval: checked
        against what the server stored (the id, its owner, its expiry, used
        once); the decision of the answer's last waiting call continues it."""
        refused = self.forbidden()
        if refused is not None:
            return refused
        conf = self.endpoint()
        try:
            body = json_body(request, conf.max_request_bytes)
        except BadInput as bad:
            return jsonify(error=bad.message), bad.status
        approved, reason = body.get("approved"), body.get("reason")
        if not isinstance(approved, bool) or not isinstance(reason, (str, type(None))):
            return jsonify(error='Send {"approved": true or false, "reason": "..."}.'), 400
        user = self.owner()
        outcome = decide(
            conf.client.approval_store(),
            approval_id,
            owner_key(user),
            approved,
            reason[:MAX_REASON] if reason else None,
            conf.client.settings.approval_ttl,
        )
        if outcome.record is None or outcome.decisions is None:
            return jsonify(status=outcome.status, message=outcome.message), outcome.status
        return self.go_on_after(conf, outcome.record, outcome.decisions, user)

    def go_on_after(
        self,
        conf: Endpoint,
        record: JSONObject,
        decisions: dict[str, JSONObject],
        user: Owner,
        message_id: str | None = None,
    ) -> Response | tuple[Response, int]:
        """The answer that waited, going on: the conversation the server
        stored (never the client's), the decided calls' results first."""
        runnable = {t.name for t in self.tools or () if isinstance(t, Tool) and t.execute}
        go, no = decided_calls(record, decisions, runnable)
        options = {
            **record["options"],
            "provider": record["provider"],
            "model": record["model"],
            "system": record["system"],
            "messages": record["messages"],
            "tools": self.tools,
            "on_finish": self.hook,
            "owner": user,
            "chat_id": record["chat_id"],
            "message_id": message_id,
            **self.answer_options,
        }

        def go_on() -> Response:
            client = conf.client
            call = client.plan(call_options(None, options))
            run = client.start(call, approved=go, denied=no, turns=record["turns"])
            return client.stream(call, run)

        return within_limits(conf.limits, conf.key, go_on)

    def vercel_decisions(
        self, conf: Endpoint, ui: UIConversation
    ) -> Response | tuple[Response, int]:
        """useChat's approval responses (addToolApprovalResponse): each
        checked as the approvals route checks it; one that fails a check
        ends as ``tool-output-denied``; the one that completes its answer's
        decisions continues it, under the assistant message's id."""
        user = self.owner()
        store, ttl = conf.client.approval_store(), conf.client.settings.approval_ttl
        failed = []
        for response in ui.approvals:
            reason = response.reason[:MAX_REASON] if response.reason else None
            outcome = decide(store, response.id, owner_key(user), response.approved, reason, ttl)
            if outcome.record is not None and outcome.decisions is not None:
                return self.go_on_after(conf, outcome.record, outcome.decisions, user, ui.continues)
            if outcome.status != 202:
                failed.append(response.tool_call_id)
        return denied_stream(ui.continues, failed)

    def agui_decisions(self, conf: Endpoint, run: RunInput) -> Response | tuple[Response, int]:
        """An AG-UI run that resumes interrupts: each entry decides its
        approval (an unknown id is ignored, never run); the one that
        completes an answer's decisions continues it, as this run."""
        user = self.owner()
        store, ttl = conf.client.approval_store(), conf.client.settings.approval_ttl
        for decision in run.decisions:
            reason = decision.reason[:MAX_REASON] if decision.reason else None
            outcome = decide(store, decision.id, owner_key(user), decision.approved, reason, ttl)
            if outcome.record is not None and outcome.decisions is not None:
                return self.go_on_after(conf, outcome.record, outcome.decisions, user, run.run_id)
        return agui_empty_run(run.thread_id, run.run_id)
