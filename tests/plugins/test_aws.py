"""The aws instance plugin against a real ``moto_server`` on 127.0.0.1, driven over its socket.

Nothing here may reach AWS: every test runs with dummy credentials, no AWS config files, the EC2
metadata service disabled, no proxies, and the plugin pointed at the local moto endpoint.
:class:`MotoServer` and :func:`offline_aws_env` are shared with the e2e test and the heal bench.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from infrakit import errors
from infrakit.plugins.aws import KIND, EC2InstancePlugin
from infrakit.spi.instance import Context, Spec
from infrakit.spi.plugin import Context as BuildContext
from infrakit.spi.plugin import Served
from infrakit.testing import serve_plugin
from infrakit.testing.harness import Harness
from infrakit.testing.processes import bin_path
from infrakit.testing.processes import free_port as _free_port

#: An AMI in moto's default image list (an Ubuntu 14.04 image in every region).
AMI = "ami-1e749f67"
REGION = "us-east-1"
PROPERTIES = {"RunInstancesInput": {"ImageId": AMI, "InstanceType": "t2.micro"}}
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def offline_aws_env(endpoint: str) -> dict[str, str]:
    """Environment settings that keep boto3 on ``endpoint`` with dummy credentials, nothing else."""
    missing = Path(tempfile.gettempdir()) / "infrakit-no-such-aws-dir"
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(missing / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(missing / "credentials"),
        "AWS_ENDPOINT_URL": endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class MotoServer:
    """A ``moto_server`` subprocess on 127.0.0.1, stopped and reaped by PID."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        # Never consult a proxy: only 127.0.0.1 may be reached.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout: float = 30.0) -> MotoServer:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
        env.update(offline_aws_env(self.url))
        # Reject unknown AMIs and instance types as EC2 does.
        env["MOTO_ENABLE_AMI_VALIDATION"] = "true"
        env["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"
        with self.log.open("wb") as handle:
            self.proc = subprocess.Popen(
                [bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.reset()
                return self
            except OSError:
                pass
            try:  # wait a little, but notice at once if it died
                self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"moto_server exited: {self.log.read_text(errors='replace')}")
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.url} within {timeout}s")

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with self._http.open(request, timeout=5) as reply:
            reply.read()

    def enforce_iam(self, enforce: bool) -> None:
        """Have moto check every request against IAM policies from now on, or stop checking."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            method="POST",
            data=b"0" if enforce else b"inf",
            headers={"Content-Type": "text/plain"},
        )
        with self._http.open(request, timeout=5) as reply:
            reply.read()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def ec2(self) -> Any:
        """A boto3 EC2 client on this server (for looking behind the plugin's back)."""
        return boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    log_dir = Path(tempfile.mkdtemp(prefix="moto", dir="/tmp"))
    server = MotoServer(log_dir / "moto_server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ec2(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A clean moto and an environment in which boto3 can only reach it."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in offline_aws_env(moto.url).items():
        monkeypatch.setenv(name, value)
    moto.reset()
    return moto.ec2()


@pytest.fixture
async def served(moto: MotoServer, ec2: Any) -> AsyncIterator[Harness]:
    plugin = EC2InstancePlugin.connect(region=REGION, endpoint_url=moto.url, page_size=5)
    try:
        async with serve_plugin(plugin, "aws") as harness:
            yield harness
    finally:
        plugin.close()


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservation["Instances"][0])


def _tags(found: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in found.get("Tags", [])}


async def test_provision_launches_one_tagged_instance_with_user_data(served, ec2) -> None:
    h = served
    spec = Spec(
        properties={
            "RunInstancesInput": {"ImageId": AMI, "InstanceType": "t3.micro", "KeyName": "k"},
            "Tags": {"team": "web", "infrakit.group": "overridden"},
        },
        tags={"infrakit.group": "workers", "infrakit.config.hash": "abc"},
        init="#!/bin/sh\necho hello",
    )
    ec2.create_key_pair(KeyName="k")
    iid = await h.instance.provision(spec)
    assert iid is not None and iid.startswith("i-")
    found = _instance(ec2, iid)
    assert found["ImageId"] == AMI
    assert found["InstanceType"] == "t3.micro"
    assert found["KeyName"] == "k"
    # The group's own tags win over Properties.Tags; no Name without a LogicalID.
    assert _tags(found) == {
        "infrakit.group": "workers",
        "infrakit.config.hash": "abc",
        "team": "web",
    }
    user_data = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == "#!/bin/sh\necho hello"
    (described,) = await h.instance.describe_instances({"infrakit.group": "workers"})
    assert described.id == iid
    assert described.logical_id is None
    assert described.tags["team"] == "web"


async def test_flat_properties_are_run_instances_parameters(served, ec2) -> None:
    h = served
    properties = {"ImageId": AMI, "InstanceType": "t2.small", "Tags": {"tier": "db"}}
    await h.instance.validate(properties)
    iid = await h.instance.provision(Spec(properties=properties, tags={"infrakit.group": "g"}))
    found = _instance(ec2, iid)
    assert found["InstanceType"] == "t2.small"
    assert _tags(found) == {"infrakit.group": "g", "tier": "db"}


async def test_a_logical_id_names_the_instance_and_an_ip_becomes_its_private_address(
    served, ec2
) -> None:
    h = served
    by_ip = await h.instance.provision(
        Spec(properties=PROPERTIES, tags={"infrakit.group": "pets"}, logical_id="172.31.0.50")
    )
    by_name = await h.instance.provision(
        Spec(properties=PROPERTIES, tags={"infrakit.group": "pets"}, logical_id="db-1")
    )
    assert _instance(ec2, by_ip)["PrivateIpAddress"] == "172.31.0.50"
    assert _tags(_instance(ec2, by_ip))["Name"] == "172.31.0.50"
    assert _tags(_instance(ec2, by_name))["Name"] == "db-1"
    described = {
        d.id: d.logical_id for d in await h.instance.describe_instances({"infrakit.group": "pets"})
    }
    assert described == {by_ip: "172.31.0.50", by_name: "db-1"}


async def test_describe_pages_through_every_instance_matching_all_tags(served, ec2) -> None:
    h = served  # the plugin asks for pages of 5
    workers = [
        await h.instance.provision(
            Spec(properties=PROPERTIES, tags={"infrakit.group": "w", "n": str(i)})
        )
        for i in range(12)
    ]
    other = await h.instance.provision(Spec(properties=PROPERTIES, tags={"infrakit.group": "x"}))
    found = await h.instance.describe_instances({"infrakit.group": "w"})
    assert sorted(d.id for d in found) == sorted(workers)
    assert [
        d.id for d in await h.instance.describe_instances({"infrakit.group": "w", "n": "3"})
    ] == [workers[3]]
    everything = {d.id for d in await h.instance.describe_instances({})}
    assert everything == {*workers, other}
    # InfraKit's rule: a wanted "" matches a missing tag (and an empty one), not another value.
    assert {d.id for d in await h.instance.describe_instances({"n": ""})} == {other}
    assert await h.instance.describe_instances({"infrakit.group": "nobody"}) == []


async def test_describe_leaves_out_terminated_instances_and_returns_json_properties(
    served, ec2
) -> None:
    h = served
    keep = await h.instance.provision(Spec(properties=PROPERTIES, tags={"g": "a"}))
    gone = await h.instance.provision(Spec(properties=PROPERTIES, tags={"g": "a"}))
    ec2.terminate_instances(InstanceIds=[gone])  # shutting-down now, terminated later
    (described,) = await h.instance.describe_instances({"g": "a"}, properties=True)
    assert described.id == keep
    props = described.properties
    assert props["InstanceId"] == keep and props["ImageId"] == AMI
    assert isinstance(props["LaunchTime"], str)
    json.dumps(props)  # JSON-safe all the way down
    assert (await h.instance.describe_instances({"g": "a"}))[0].properties is None


async def test_label_adds_tags_and_unknown_instances_are_not_found(served, ec2) -> None:
    h = served
    iid = await h.instance.provision(Spec(properties=PROPERTIES, tags={"a": "1", "b": "2"}))
    await h.instance.label(iid, {"b": "3", "c": "4"})
    assert _tags(_instance(ec2, iid)) == {"a": "1", "b": "3", "c": "4"}
    (described,) = await h.instance.describe_instances({"c": "4"})
    assert described.id == iid
    with pytest.raises(errors.NotFoundError, match=r"InvalidInstanceID\.NotFound"):
        await h.instance.label("i-0123456789abcdef0", {"a": "b"})
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(errors.NotFoundError, match=f"instance {iid} not found or terminated"):
        await h.instance.label(iid, {"a": "b"})


async def test_destroy_terminates_and_unknown_ids_are_not_found(served, ec2) -> None:
    h = served
    iid = await h.instance.provision(Spec(properties=PROPERTIES, tags={"g": "d"}))
    await h.instance.destroy(iid, Context("terminate"))
    assert _instance(ec2, iid)["State"]["Name"] in ("shutting-down", "terminated")
    assert await h.instance.describe_instances({"g": "d"}) == []
    with pytest.raises(errors.NotFoundError, match="already terminated"):
        await h.instance.destroy(iid, Context("terminate"))
    with pytest.raises(errors.NotFoundError) as unknown:
        await h.instance.destroy("i-0123456789abcdef0", Context("terminate"))
    message = str(unknown.value)
    assert "TerminateInstances" in message and "InvalidInstanceID.NotFound" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (None, "expected a JSON object, got null"),
        ([AMI], "expected a JSON object, got list"),
        (
            {"RunInstancesInput": {"InstanceType": "t2.micro"}},
            "Properties.RunInstancesInput: ImageId missing",
        ),
        ({"ImageId": AMI}, "Properties: InstanceType missing"),
        ({"RunInstancesInput": "ami"}, "RunInstancesInput: expected a JSON object"),
        (
            {"RunInstancesInput": {"ImageId": AMI, "InstanceType": "t2.micro"}, "Image": 1},
            "unexpected key(s) Image",
        ),
        ({**PROPERTIES, "Tags": {"n": 1}}, "Properties.Tags: expected an object of strings"),
        ({"ImageId": AMI, "InstanceType": "t2.micro", "MaxCount": 3}, "MaxCount: remove it"),
        (
            {"ImageId": AMI, "InstanceType": "t2.micro", "ClientToken": "x"},
            "ClientToken: remove it",
        ),
        (
            {"ImageId": AMI, "InstanceType": "t2.micro", "Colour": "red"},
            'Unknown parameter in input: "Colour"',
        ),
        ({"ImageId": AMI, "InstanceType": 5}, "Invalid type for parameter InstanceType"),
    ],
)
async def test_validate_rejects_bad_properties_in_one_line(served, properties, expected) -> None:
    with pytest.raises(errors.SpecError) as rejected:
        await served.instance.validate(properties)
    message = str(rejected.value)
    assert expected in message
    assert "\n" not in message
    # Nothing was launched by a rejected spec.
    with pytest.raises(errors.SpecError):
        await served.instance.provision(Spec(properties=properties))
    assert await served.instance.describe_instances({}) == []


async def test_a_launch_template_can_stand_in_for_image_and_type(served, ec2) -> None:
    ec2.create_launch_template(
        LaunchTemplateName="workers",
        LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.small"},
    )
    properties = {"RunInstancesInput": {"LaunchTemplate": {"LaunchTemplateName": "workers"}}}
    await served.instance.validate(properties)
    iid = await served.instance.provision(Spec(properties=properties, tags={"g": "lt"}))
    assert _instance(ec2, iid)["InstanceType"] == "t3.small"


async def test_aws_errors_reach_the_user_with_their_code(served) -> None:
    bad_image = {"RunInstancesInput": {"ImageId": "ami-00000000", "InstanceType": "t2.micro"}}
    with pytest.raises(errors.SpecError, match=r"RunInstancesInput\.ImageId: 'ami-00000000'"):
        await served.instance.validate(bad_image)  # asks EC2 (DescribeImages)
    # Provision does not ask first: RunInstances' own error reaches the user.
    with pytest.raises(errors.SpecError) as rejected:
        await served.instance.provision(Spec(properties=bad_image, tags={"g": "x"}))
    message = str(rejected.value)
    assert message.startswith("aws: EC2 RunInstances failed: InvalidAMIID.NotFound:")
    assert "ami-00000000" in message and "\n" not in message


async def test_an_unreachable_endpoint_is_a_one_line_plugin_error(ec2) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    client = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=closed,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    plugin = EC2InstancePlugin(client)
    try:
        async with serve_plugin(plugin, "aws") as h:
            with pytest.raises(errors.PluginError) as failed:
                await h.instance.describe_instances({"g": "x"})
    finally:
        plugin.close()
    message = str(failed.value)
    assert "cannot reach the EC2 endpoint" in message and closed in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("run_input", "expected"),
    [
        (
            {"ImageId": AMI, "InstanceType": "t9.bogus"},
            "aws instance Properties.RunInstancesInput.InstanceType: 't9.bogus' does not exist "
            "in us-east-1 (EC2 DescribeInstanceTypes: InvalidInstanceType); expected an instance "
            'type EC2 offers in this region, e.g. "t3.micro"; fix InstanceType and commit again',
        ),
        (
            {"ImageId": "ami-00000000", "InstanceType": "t3.micro"},
            "aws instance Properties.RunInstancesInput.ImageId: 'ami-00000000' does not exist in "
            "us-east-1 (EC2 DescribeImages: InvalidAMIID.NotFound); expected the ID of an AMI",
        ),
        (
            {"ImageId": "my-image", "InstanceType": "t3.micro"},
            "ImageId: 'my-image' does not exist in us-east-1 (EC2 DescribeImages: "
            "InvalidAMIID.Malformed)",
        ),
    ],
    ids=["unknown-instance-type", "unknown-image", "malformed-image"],
)
async def test_validate_asks_ec2_whether_the_instance_type_and_image_exist(
    served, ec2, run_input, expected
) -> None:
    properties = {"RunInstancesInput": run_input}
    with pytest.raises(errors.SpecError) as rejected:
        await served.instance.validate(properties)
    message = str(rejected.value)
    assert expected in message, message
    assert "\n" not in message
    assert ec2.describe_instances()["Reservations"] == []


async def test_validate_asks_ec2_once_per_value_and_only_what_it_can_check(ec2, moto) -> None:
    plugin = EC2InstancePlugin.connect(region=REGION, endpoint_url=moto.url)
    calls: list[str] = []
    plugin.client.meta.events.register(
        "before-call.ec2.*", lambda model, **_: calls.append(model.name)
    )
    try:
        async with serve_plugin(plugin, "aws") as h:
            await h.instance.validate(PROPERTIES)
            assert sorted(calls) == ["DescribeImages", "DescribeInstanceTypes"]
            calls.clear()
            for _ in range(3):  # positive answers are remembered
                await h.instance.validate(PROPERTIES)
                await h.instance.validate({"ImageId": AMI, "InstanceType": "t2.micro"})
            assert calls == []
            await h.instance.validate({"ImageId": AMI, "InstanceType": "t3.large"})
            assert calls == ["DescribeInstanceTypes"]
            calls.clear()
            for _ in range(2):  # negative answers are not: the type may be offered later
                with pytest.raises(errors.SpecError, match=r"'t9\.bogus'"):
                    await h.instance.validate({"ImageId": AMI, "InstanceType": "t9.bogus"})
            assert calls == ["DescribeInstanceTypes"] * 2
            calls.clear()
            # An SSM parameter as ImageId is resolved by RunInstances; a launch template's
            # values are not looked at; local errors never reach EC2.
            ssm = (
                "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
            )
            await h.instance.validate({"ImageId": ssm, "InstanceType": "t2.micro"})
            await h.instance.validate({"LaunchTemplate": {"LaunchTemplateName": "whatever"}})
            with pytest.raises(errors.SpecError, match="ImageId missing"):
                await h.instance.validate({"InstanceType": "t9.bogus"})
            assert calls == []
    finally:
        plugin.close()


async def test_validate_with_ec2_unreachable_is_a_prompt_one_line_error(ec2) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    # The plugin's own client: standard retries (5 attempts) and its connect timeout.
    plugin = EC2InstancePlugin.connect(region=REGION, endpoint_url=closed)
    try:
        async with serve_plugin(plugin, "aws") as h:
            started = time.monotonic()
            with pytest.raises(errors.PluginError) as failed:
                await h.instance.validate(PROPERTIES)
            elapsed = time.monotonic() - started
    finally:
        plugin.close()
    message = str(failed.value)
    assert message.startswith(
        "aws instance Properties.RunInstancesInput.InstanceType: could not check 't2.micro' with "
        "EC2: DescribeInstanceTypes failed: cannot reach the EC2 endpoint"
    ), message
    assert closed in message and message.endswith("then commit again")
    assert "\n" not in message
    assert elapsed < 10, elapsed


async def test_validate_skips_a_check_the_caller_may_not_make(ec2, moto, caplog) -> None:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto.url)
    iam.create_user(UserName="launcher")
    allowed = ["ec2:DescribeImages", "ec2:RunInstances", "ec2:DescribeInstances", "ec2:CreateTags"]
    iam.put_user_policy(
        UserName="launcher",
        PolicyName="no-describe-instance-types",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="launcher")["AccessKey"]
    client = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    plugin = EC2InstancePlugin(client)
    moto.enforce_iam(True)
    try:
        async with serve_plugin(plugin, "aws") as h:
            with caplog.at_level(logging.WARNING, logger="infrakit.plugins.aws.plugin"):
                await h.instance.validate(PROPERTIES)
            # The check it may make still runs.
            with pytest.raises(errors.SpecError, match="ImageId: 'ami-00000000' does not exist"):
                await h.instance.validate({"ImageId": "ami-00000000", "InstanceType": "t2.micro"})
    finally:
        moto.enforce_iam(False)
        plugin.close()
    assert "did not check InstanceType 't2.micro': EC2 DescribeInstanceTypes is not allowed" in (
        caplog.text
    )


def _build_context(options: dict[str, Any], home: Path) -> BuildContext:
    def no_lookup(name: str) -> Any:
        raise AssertionError(f"the aws kind looked up {name}")

    return BuildContext("aws", options, home, no_lookup, no_lookup, no_lookup)


async def test_the_kind_serves_aws_and_aws_ec2_instance(moto, ec2, infrakit_home) -> None:
    served = KIND.build(_build_context({"endpoint-url": moto.url, "region": REGION}, infrakit_home))
    assert isinstance(served, Served)
    assert set(served.instance) == {"", "ec2-instance"}
    async with serve_plugin(served, "aws") as h:
        from infrakit.rpc.instance import InstanceClient

        typed = InstanceClient(h.client, "ec2-instance")
        iid = await typed.provision(Spec(properties=PROPERTIES, tags={"g": "kind"}))
        assert [d.id for d in await h.instance.describe_instances({"g": "kind"})] == [iid]


def test_the_kind_needs_a_region(moto, ec2, infrakit_home, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(errors.SpecError, match=r"no AWS region configured; pass -o aws.region="):
        KIND.build(_build_context({"endpoint-url": moto.url}, infrakit_home))


async def test_info_example_is_valid_properties(served, ec2) -> None:
    plugin = EC2InstancePlugin.connect(region=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        info = plugin.info()
        await served.instance.validate(info["example"])
        assert "RunInstancesInput" in info["schema"]["properties"]
    finally:
        plugin.close()
