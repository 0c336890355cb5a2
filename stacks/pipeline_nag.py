"""How cdk-nag names a token in a finding id, so acknowledgments can match it exactly.

cdk-nag v3 matches acknowledgments on the full finding id, e.g.
``AwsSolutions-IAM5[Resource::<stack>:ExportsOutput...Arn1A2B3C4D/models/*]``. A
reference to another stack's bucket appears there as CDK's export name, which CDK
derives from the producer's logical id (refs.ts ``generateExportName`` and
``makeUniqueId``: the alphanumeric parts plus the first 8 hex digits of an MD5).
Computing it keeps each acknowledgment on one exact resource string instead of
a blanket suppression. If CDK changes that scheme, synth fails loudly on the
unacknowledged finding (tests/infra).
"""

from __future__ import annotations

import hashlib
import json
import re

from aws_cdk import Stack
from constructs import IConstruct


def _unique_id(components: list[str]) -> str:
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return "".join(re.sub(r"[^A-Za-z0-9]", "", part) for part in components) + digest


def token_text(consumer: IConstruct, producer: IConstruct, token: str) -> str:
    """The text cdk-nag prints for ``token`` (an attribute of ``producer``) inside ``consumer``'s stack."""
    producer_stack = Stack.of(producer)
    resolved = producer_stack.resolve(token)
    if Stack.of(consumer) is producer_stack:
        if "Ref" in resolved:
            return f"<{resolved['Ref']}>"
        logical_id, attribute = resolved["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    export_id = "Output" + json.dumps(resolved, separators=(",", ":"))
    return f"{producer_stack.stack_name}:{_unique_id(['Exports', export_id])}"
