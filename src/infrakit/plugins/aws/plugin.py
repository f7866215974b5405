"""The aws instance plugin's implementation: the Instance SPI mapped onto EC2 API calls via boto3.

Each SPI method is one or two EC2 calls, written as plain ``def`` methods: the SPI adapter runs them
in a worker thread, so boto3's blocking I/O never stalls the event loop.

==================  =============================================================================
SPI                 EC2
==================  =============================================================================
Validate            local checks first: Properties shape, ImageId + InstanceType or a
                    LaunchTemplate, botocore's own parameter validation against the RunInstances
                    model; then ``DescribeInstanceTypes`` for the InstanceType and
                    ``DescribeImages`` for the ImageId, each at most once per value and plugin
                    (positive answers are cached). EC2's DryRun is not used: it proves little
                    and moto lacks it.
Provision           ``RunInstances`` (MinCount = MaxCount = 1) with every tag in
                    ``TagSpecifications``, ``UserData`` = spec Init, a LogicalID that is an IP
                    address as ``PrivateIpAddress``
DescribeInstances   ``DescribeInstances``, paginated, filtered by ``tag:KEY=VALUE`` and by state
                    (``pending``, ``running``, ``stopping``, ``stopped``: terminated and
                    shutting-down instances are gone as far as a group is concerned)
Label               ``DescribeInstances`` (the instance must exist) + ``CreateTags``
Destroy             ``TerminateInstances``; an unknown or already terminated ID is NotFoundError
==================  =============================================================================

boto3 is imported on first use, not with this module: it is an optional extra, and listing the
plugin kinds must not pay for importing it.

Errors from AWS become one line naming the EC2 call, the AWS error code and its message, as a
:class:`SpecError` when the request was wrong (``Invalid*``, ``Missing*``, ``Unsupported*``), a
:class:`NotFoundError` for unknown instance IDs, and a :class:`PluginError` otherwise. Retries use
botocore's ``standard`` mode; RunInstances carries an idempotency token that botocore generates
once per call, so a retried launch never creates a second instance.

Validate's EC2 checks: an unknown InstanceType or ImageId is a :class:`SpecError` naming the field,
the value and what was expected; an EC2 that cannot be asked (unreachable, throttled after the
retries) is a :class:`PluginError` saying the value could not be checked. A caller whose IAM policy
lacks ``ec2:DescribeInstanceTypes`` or ``ec2:DescribeImages`` gets a logged warning and the check is
skipped (RunInstances still reports a bad value), so that permission stays optional.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
from collections.abc import Iterator
from typing import Any

from infrakit._version import __version__
from infrakit.errors import InfrakitError, NotFoundError, PluginError, SpecError
from infrakit.spi.instance import Context, Description, Spec
from infrakit.spi.types import JSON, LOGICAL_ID_TAG, Tags

__all__ = ["INSTANCE_TYPE_NAME", "EC2InstancePlugin"]

log = logging.getLogger(__name__)

#: The instance type EC2 serves this plugin under (``aws/ec2-instance``), as InfraKit's did.
INSTANCE_TYPE_NAME = "ec2-instance"
#: States in which an instance still belongs to its group.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
#: Largest DescribeInstances page EC2 allows.
MAX_PAGE_SIZE = 1000
#: RunInstances parameters the plugin owns; a spec that sets them could not work.
OWNED_PARAMETERS = {
    "MinCount": "the group controller creates instances one at a time",
    "MaxCount": "the group controller creates instances one at a time",
    "ClientToken": "one fixed token would make every launch return the same instance",
    "DryRun": "a dry run never creates an instance",
}
#: AWS error codes that mean "no such instance".
INSTANCE_NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
#: AWS error code prefixes that mean "the request was wrong" (fix the spec, not the network).
SPEC_ERROR_CODE = re.compile(r"^(Invalid|Missing|Unsupported|Unknown)|ParameterValue|\.Malformed$")

#: AWS error codes that mean "not allowed to make this call": Validate then skips that EC2 check.
UNAUTHORIZED_CODES = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
#: Error codes with which DescribeInstanceTypes / DescribeImages say "no such type / image".
UNKNOWN_VALUE_CODES = {
    "InstanceType": re.compile(r"^(InvalidInstanceType|InvalidParameterValue)"),
    "ImageId": re.compile(r"^(InvalidAMIID\.|InvalidParameterValue)"),
}
#: Values checked with EC2 and found to exist that a plugin remembers (then it starts over).
KNOWN_VALUES_LIMIT = 1024
#: An ImageId that RunInstances resolves from SSM Parameter Store (DescribeImages cannot check it).
SSM_IMAGE_PREFIX = "resolve:ssm:"

#: The smallest valid Properties, quoted in error messages.
PROPERTIES_HINT = 'e.g. {"RunInstancesInput": {"ImageId": "ami-...", "InstanceType": "t3.micro"}}'

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "InfraKit's shape {RunInstancesInput, Tags} or, equally, the RunInstances parameters "
        "themselves next to an optional Tags object. ImageId and InstanceType are required "
        "unless a LaunchTemplate provides them."
    ),
    "properties": {
        "RunInstancesInput": {
            "type": "object",
            "description": "EC2 RunInstances parameters (ImageId, InstanceType, SubnetId, ...)",
        },
        "Tags": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "extra tags for every instance (the group's own tags win)",
        },
    },
}
PROPERTIES_EXAMPLE: dict[str, Any] = {
    "RunInstancesInput": {
        "ImageId": "ami-1e749f67",
        "InstanceType": "t3.micro",
        "SubnetId": "subnet-0123456789abcdef0",
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
        "KeyName": "my-key",
    },
    "Tags": {"project": "infrakit"},
}


def _json_safe(value: Any) -> Any:
    """boto3's response as plain JSON: datetimes as ISO 8601 strings, bytes as text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _aws_error(exc: Exception, call: str) -> InfrakitError:
    """One-line infrakit error for a failed EC2 call (the AWS error code included)."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = _one_line(error.get("Message") or str(exc))
        text = f"aws: EC2 {call} failed: {code}: {message}"
        if code in INSTANCE_NOT_FOUND_CODES:
            return NotFoundError(
                f"{text}; list instances with: infrakit instance --name aws describe"
            )
        if SPEC_ERROR_CODE.search(code):
            return SpecError(f"{text}; fix the instance Properties and commit again")
        return PluginError(f"{text}; check the AWS credentials, permissions and quotas")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        report = _one_line(str(exc)).replace("Parameter validation failed: ", "")
        return SpecError(
            f"aws: instance Properties are not valid {call} parameters: {report}; "
            f"see infrakit instance --name aws info"
        )
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return PluginError(
            f"aws: EC2 {call} failed: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run on an instance with a role"
        )
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        return PluginError(
            f"aws: EC2 {call} failed: cannot reach the EC2 endpoint ({_one_line(str(exc))}); "
            f"check the network, the region and -o aws.endpoint-url"
        )
    return PluginError(f"aws: EC2 {call} failed: {type(exc).__name__}: {_one_line(str(exc))}")


def _error_code(exc: Exception) -> str | None:
    """The AWS error code of a failed call, if AWS answered at all."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def _tag_list(tags: Tags) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _tag_dict(tags: list[dict[str, str]] | None) -> Tags:
    return {t["Key"]: t.get("Value", "") for t in tags or () if "Key" in t}


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class EC2InstancePlugin:
    """Instances as EC2 instances. Serve it with ``infrakit plugin start aws``.

    ``client`` is an EC2 client from boto3; :meth:`connect` builds one with the settings this plugin
    relies on (standard retries, bounded timeouts).
    """

    def __init__(self, client: Any, *, page_size: int = MAX_PAGE_SIZE) -> None:
        if not 5 <= page_size <= MAX_PAGE_SIZE:
            raise SpecError(f"aws: page size {page_size}: expected 5 to {MAX_PAGE_SIZE}")
        self.client = client
        self.page_size = page_size
        self._run_instances_shape = client.meta.service_model.operation_model(
            "RunInstances"
        ).input_shape
        #: ("InstanceType" | "ImageId", value) pairs EC2 confirmed exist: Validate asks once.
        self._known: set[tuple[str, str]] = set()

    @classmethod
    def connect(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> EC2InstancePlugin:
        """A plugin with its own EC2 client; credentials and region from the standard chain."""
        try:  # imported here: boto3 is optional, and importing it takes ~0.2 s
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError as exc:
            raise SpecError(
                f"aws: {exc.name or 'boto3'} is not installed; pip install 'pyinfrakit[aws]'"
            ) from None
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra=f"infrakit-instance-aws/{__version__}",
        )
        session = boto3.session.Session()
        try:
            client = session.client(
                "ec2", region_name=region or None, endpoint_url=endpoint_url or None, config=config
            )
        except botocore.exceptions.NoRegionError:
            raise SpecError(
                "aws: no AWS region configured; pass -o aws.region=us-east-1 or set AWS_REGION"
            ) from None
        except ValueError as exc:  # a malformed endpoint URL
            raise SpecError(f"aws: {_one_line(str(exc))}; check -o aws.endpoint-url") from None
        return cls(client, page_size=page_size)

    def close(self) -> None:
        self.client.close()

    # --- the Instance SPI -----------------------------------------------------------------------

    def validate(self, properties: JSON) -> None:
        run_input, _tags = self._run_instances_input(properties)
        where = self._where(properties)
        instance_type = run_input.get("InstanceType")
        if isinstance(instance_type, str) and instance_type:
            self._check_exists("InstanceType", instance_type, where)
        image = run_input.get("ImageId")
        if isinstance(image, str) and image and not image.startswith(SSM_IMAGE_PREFIX):
            self._check_exists("ImageId", image, where)

    def provision(self, spec: Spec) -> str:
        run_input, extra_tags = self._run_instances_input(spec.properties)
        tags = {**extra_tags, **spec.tags}
        if spec.logical_id is not None:
            tags.setdefault("Name", spec.logical_id)
            tags.setdefault(LOGICAL_ID_TAG, spec.logical_id)
            if _is_ip_address(spec.logical_id):
                self._request_private_ip(run_input, spec.logical_id)
        self._add_instance_tags(run_input, tags)
        if spec.init:
            run_input["UserData"] = spec.init  # botocore base64-encodes it
        run_input["MinCount"] = run_input["MaxCount"] = 1
        try:
            reply = self.client.run_instances(**run_input)
        except Exception as exc:
            raise _aws_error(exc, "RunInstances") from None
        instances = reply.get("Instances") or []
        if len(instances) != 1:
            raise PluginError(
                f"aws: EC2 RunInstances returned {len(instances)} instances, expected 1; "
                f"check for stray instances tagged {tags.get('infrakit.group', '')!r}"
            )
        instance_id = str(instances[0]["InstanceId"])
        log.info("provisioned %s (%s)", instance_id, tags.get("infrakit.group", "no group"))
        return instance_id

    def label(self, instance_id: str, labels: Tags) -> None:
        self._existing(instance_id)
        if not labels:
            return
        try:
            self.client.create_tags(Resources=[instance_id], Tags=_tag_list(labels))
        except Exception as exc:
            raise _aws_error(exc, "CreateTags") from None
        log.debug("labelled %s with %s", instance_id, labels)

    def destroy(self, instance_id: str, context: Context | None = None) -> None:
        try:
            reply = self.client.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:
            raise _aws_error(exc, "TerminateInstances") from None
        changes = reply.get("TerminatingInstances") or []
        previous = changes[0].get("PreviousState", {}).get("Name") if changes else None
        if previous in (None, "terminated"):
            raise NotFoundError(
                f"aws: instance {instance_id} is already terminated; "
                f"list instances with: infrakit instance --name aws describe"
            )
        reason = f" ({context.reason})" if context is not None and context.reason else ""
        log.info("terminated %s%s", instance_id, reason)

    def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        # EC2 filters match exact values; InfraKit's "" also matches a missing tag, so those
        # are checked here instead.
        filters = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
        filters += [
            {"Name": f"tag:{key}", "Values": [value]}
            for key, value in sorted(tags.items())
            if value != ""
        ]
        blank = [key for key, value in tags.items() if value == ""]
        out: list[Description] = []
        for found in self._instances(filters):
            instance_tags = _tag_dict(found.get("Tags"))
            if any(instance_tags.get(key, "") != "" for key in blank):
                continue
            out.append(
                Description(
                    id=str(found["InstanceId"]),
                    logical_id=instance_tags.get(LOGICAL_ID_TAG) or None,
                    tags=instance_tags,
                    properties=_json_safe(found) if properties else None,
                )
            )
        return out

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}

    # --- helpers --------------------------------------------------------------------------------

    def _instances(self, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("describe_instances")
        pages = paginator.paginate(Filters=filters, PaginationConfig={"PageSize": self.page_size})
        try:
            for page in pages:
                for reservation in page.get("Reservations") or ():
                    yield from reservation.get("Instances") or ()
        except Exception as exc:
            raise _aws_error(exc, "DescribeInstances") from None

    def _existing(self, instance_id: str) -> dict[str, Any]:
        """The live instance ``instance_id`` (NotFoundError when unknown or terminated)."""
        try:
            reply = self.client.describe_instances(InstanceIds=[instance_id])
        except Exception as exc:
            raise _aws_error(exc, "DescribeInstances") from None
        for reservation in reply.get("Reservations") or ():
            for found in reservation.get("Instances") or ():
                if found.get("State", {}).get("Name") in LIVE_STATES:
                    return dict(found)
        raise NotFoundError(
            f"aws: instance {instance_id} not found or terminated; "
            f"list instances with: infrakit instance --name aws describe"
        )

    @staticmethod
    def _where(properties: JSON) -> str:
        """How error messages name the RunInstances parameters of ``properties``."""
        if isinstance(properties, dict) and "RunInstancesInput" in properties:
            return "Properties.RunInstancesInput"
        return "Properties"

    def _check_exists(self, field: str, value: str, where: str) -> None:
        """Ask EC2 whether the InstanceType or ImageId ``value`` exists (once per value).

        One DescribeInstanceTypes / DescribeImages call with the plugin's client, so its timeouts
        and retries apply; only positive answers are remembered.
        """
        key = (field, value)
        if key in self._known:
            return
        region = self.client.meta.region_name
        if field == "InstanceType":
            call = "DescribeInstanceTypes"
            expected = 'an instance type EC2 offers in this region, e.g. "t3.micro"'
            listing = 'aws ec2 describe-instance-types --query "InstanceTypes[].InstanceType"'
        else:
            call = "DescribeImages"
            expected = "the ID of an AMI this account can launch in this region (ami-...)"
            listing = "aws ec2 describe-images --owners self amazon"
        try:
            if field == "InstanceType":
                reply = self.client.describe_instance_types(InstanceTypes=[value])
                found = reply.get("InstanceTypes") or []
                exists = any(t.get("InstanceType") == value for t in found)
            else:
                reply = self.client.describe_images(ImageIds=[value], IncludeDeprecated=True)
                exists = any(i.get("ImageId") == value for i in reply.get("Images") or ())
            code = "not listed"
        except Exception as exc:
            code = _error_code(exc) or ""
            if code in UNAUTHORIZED_CODES:
                log.warning(
                    "aws: Validate did not check %s %r: EC2 %s is not allowed (%s); "
                    "RunInstances will report a bad value",
                    field,
                    value,
                    call,
                    code,
                )
                return
            if not UNKNOWN_VALUE_CODES[field].search(code):
                reason = str(_aws_error(exc, call)).removeprefix("aws: EC2 ")
                # An Invalid* code here is about the request (a bad token), not about the value.
                reason = reason.replace(
                    "; fix the instance Properties and commit again",
                    "; check the AWS credentials and the region",
                )
                raise PluginError(
                    f"aws instance {where}.{field}: could not check {value!r} with EC2: "
                    f"{reason}; then commit again"
                ) from None
            exists = False
        if not exists:
            raise SpecError(
                f"aws instance {where}.{field}: {value!r} does not exist in {region} "
                f"(EC2 {call}: {code}); expected {expected}; fix {field} and commit again "
                f"(list them with: {listing})"
            )
        if len(self._known) >= KNOWN_VALUES_LIMIT:
            self._known.clear()
        self._known.add(key)

    def _run_instances_input(self, properties: JSON) -> tuple[dict[str, Any], Tags]:
        """Properties -> (RunInstances parameters, extra tags), or a SpecError saying what's wrong."""
        if not isinstance(properties, dict):
            raise SpecError(
                f"aws instance Properties: expected a JSON object, got "
                f"{'null' if properties is None else type(properties).__name__}; {PROPERTIES_HINT}"
            )
        if "RunInstancesInput" in properties:
            unknown = sorted(set(properties) - {"RunInstancesInput", "Tags"})
            if unknown:
                raise SpecError(
                    f"aws instance Properties: unexpected key(s) {', '.join(unknown)} next to "
                    f"RunInstancesInput (allowed: RunInstancesInput, Tags); {PROPERTIES_HINT}"
                )
            run_input = properties["RunInstancesInput"]
            where = "Properties.RunInstancesInput"
        else:
            run_input = {k: v for k, v in properties.items() if k != "Tags"}
            where = "Properties"
        if not isinstance(run_input, dict):
            raise SpecError(f"aws instance {where}: expected a JSON object; {PROPERTIES_HINT}")
        tags = properties.get("Tags") or {}
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise SpecError(
                'aws instance Properties.Tags: expected an object of strings, e.g. {"team": "web"}'
            )
        for key, why in OWNED_PARAMETERS.items():
            if key in run_input and not (key in ("MinCount", "MaxCount") and run_input[key] == 1):
                raise SpecError(f"aws instance {where}.{key}: remove it ({why})")
        if "LaunchTemplate" not in run_input:
            missing = [k for k in ("ImageId", "InstanceType") if not run_input.get(k)]
            if missing:
                raise SpecError(
                    f"aws instance {where}: {' and '.join(missing)} missing; set ImageId and "
                    f"InstanceType, or a LaunchTemplate that provides them; {PROPERTIES_HINT}"
                )
        run_input = dict(run_input)
        import botocore.validate

        report = botocore.validate.ParamValidator().validate(
            {**run_input, "MinCount": 1, "MaxCount": 1}, self._run_instances_shape
        )
        if report.has_errors():
            raise SpecError(
                f"aws instance {where}: not valid RunInstances parameters: "
                f"{_one_line(report.generate_report())}; see infrakit instance --name aws info"
            )
        return run_input, dict(tags)

    @staticmethod
    def _request_private_ip(run_input: dict[str, Any], address: str) -> None:
        """InfraKit's pets: a LogicalID that is an IP address becomes the primary private IP."""
        interfaces = run_input.get("NetworkInterfaces")
        if interfaces:
            first = dict(interfaces[0])
            first.setdefault("PrivateIpAddress", address)
            run_input["NetworkInterfaces"] = [first, *interfaces[1:]]
        else:
            run_input.setdefault("PrivateIpAddress", address)

    @staticmethod
    def _add_instance_tags(run_input: dict[str, Any], tags: Tags) -> None:
        """Put ``tags`` on the instance at launch, merged over any instance TagSpecification."""
        specs = [dict(s) for s in run_input.get("TagSpecifications") or ()]
        merged: Tags = {}
        others = []
        for tag_spec in specs:
            if tag_spec.get("ResourceType") == "instance":
                merged.update(_tag_dict(tag_spec.get("Tags")))
            else:
                others.append(tag_spec)
        merged.update(tags)
        run_input["TagSpecifications"] = [
            *others,
            {"ResourceType": "instance", "Tags": _tag_list(merged)},
        ]
