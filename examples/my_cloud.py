"""my-cloud: a complete infrakit instance provider (walked through in docs/writing-a-plugin.md).

Instances are kept in a dict so that this runs anywhere; a real provider calls its cloud's API in
the same four methods. Serve it with ``python examples/my_cloud.py``: the socket ``my-cloud``
appears in the plugin directory, and a group spec can name ``"Plugin": "my-cloud"``.
"""

import itertools

import infrakit
from infrakit.errors import NotFoundError, SpecError
from infrakit.spi.instance import Description, Spec, tags_match
from infrakit.spi.plugin import Context, Kind, Served


class MyCloud:
    def __init__(self) -> None:
        self.instances: dict[str, Description] = {}
        self.ids = itertools.count(1)

    async def validate(self, properties: object) -> None:
        if properties is not None and not isinstance(properties, dict):
            raise SpecError('my-cloud Properties: expected a JSON object, e.g. {"size": "small"}')

    async def provision(self, spec: Spec) -> str:
        instance_id = f"vm-{next(self.ids)}"
        self.instances[instance_id] = Description(instance_id, spec.logical_id, dict(spec.tags))
        return instance_id

    async def destroy(self, instance_id: str) -> None:
        if self.instances.pop(instance_id, None) is None:
            raise NotFoundError(f"my-cloud: no instance {instance_id}")

    async def describe_instances(self, tags: dict[str, str]) -> list[Description]:
        return [d for d in self.instances.values() if tags_match(d.tags, tags)]


def build(ctx: Context) -> Served:
    return Served(instance={"": MyCloud()})


# Registered as an entry point, this lets `infrakit plugin start my-cloud` run it.
KIND = Kind(name="my-cloud", default_name="my-cloud", summary="instances in a dict", build=build)

if __name__ == "__main__":
    infrakit.serve(MyCloud(), name="my-cloud")
