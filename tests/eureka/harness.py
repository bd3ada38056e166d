"""Sample Eureka bodies and requests of the Eureka API tests, written from what Eureka clients send
(py-eureka-client's `register`, Eureka's own JSON and XML codecs), not from the server's code."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import defusedxml.ElementTree
import httpx

from tests.server.harness import Api

JSON = {"accept": "application/json"}
APP = "ORDERS"
ID = "web-1:orders:8080"
DC_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"


def info(instance_id: str = ID, app: str = APP, **fields: Any) -> dict[str, Any]:
    """An InstanceInfo as py-eureka-client registers one (its `register`'s dict)."""
    host = instance_id.split(":")[0]
    data: dict[str, Any] = {
        "instanceId": instance_id,
        "hostName": host,
        "app": app,
        "ipAddr": "10.0.0.5",
        "status": "UP",
        "overriddenstatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": DC_CLASS, "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90,
                      "registrationTimestamp": 0, "lastRenewalTimestamp": 0,
                      "evictionTimestamp": 0, "serviceUpTimestamp": 0},
        "metadata": {"owner": "team-a"},
        "homePageUrl": f"http://{host}:8080/",
        "statusPageUrl": f"http://{host}:8080/info",
        "healthCheckUrl": f"http://{host}:8080/health",
        "secureHealthCheckUrl": "",
        "vipAddress": app.lower(),
        "secureVipAddress": app.lower(),
        "lastUpdatedTimestamp": "1000",
        "lastDirtyTimestamp": "1000",
        "isCoordinatingDiscoveryServer": "false",
    }
    data.update(fields)
    return data


def info_xml(instance_id: str = ID, app: str = APP, metadata: str = "<owner>team-a</owner>"
             ) -> bytes:
    """An InstanceInfo as Eureka's XML codec (XStream) writes one."""
    host = instance_id.split(":")[0]
    return (
        f"<instance><instanceId>{instance_id}</instanceId><hostName>{host}</hostName>"
        f"<app>{app}</app><ipAddr>10.0.0.5</ipAddr><status>UP</status>"
        f"<overriddenstatus>UNKNOWN</overriddenstatus><port enabled=\"true\">8080</port>"
        f"<securePort enabled=\"false\">443</securePort><countryId>1</countryId>"
        f"<dataCenterInfo class=\"{DC_CLASS}\"><name>MyOwn</name></dataCenterInfo>"
        f"<leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs>"
        f"<durationInSecs>90</durationInSecs></leaseInfo><metadata>{metadata}</metadata>"
        f"<vipAddress>{app.lower()}</vipAddress><lastDirtyTimestamp>1000</lastDirtyTimestamp>"
        f"</instance>").encode()


async def register(api: Api, body: dict[str, Any] | None = None, app: str = APP,
                   **headers: str) -> httpx.Response:
    """POST /eureka/apps/APP with `{"instance": body}` as JSON."""
    return await api.client.post(f"/eureka/apps/{app}", json={"instance": body or info()},
                                 headers=headers)


def xml(response: httpx.Response) -> ElementTree.Element:
    """An XML answer, parsed (it must be application/xml)."""
    assert "application/xml" == response.headers["content-type"]
    root: ElementTree.Element = defusedxml.ElementTree.fromstring(response.content)
    return root


def texts(element: ElementTree.Element, path: str) -> list[str]:
    """The text of every element at `path` (ElementTree's XPath subset)."""
    return [e.text or "" for e in element.iterfind(path)]
