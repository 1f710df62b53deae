"""Small API behaviours. NIC attributes that only the plan scripts declare
(@Name.sub@ tokens): a deployment plan shows them as one nic attribute, and a
GET -> PUT round trip of the plan works (it used to fail on the dotted names).
A %00 in a URL never truncates the id that is looked up."""


def test_script_only_nic_round_trip(srv):
    ps = srv.request("POST", "/rest/plan-scripts", {
        "name": "nic script", "planType": "deploy",
        "content": "echo @ManagementNIC.mac@ @ManagementNIC.ipaddress@ @ManagementNIC.vlanid:0@ @HostName@"})
    assert ps.status == 201, ps
    bp = srv.request("POST", "/rest/build-plans", {
        "name": "nic bp", "oeBuildPlanType": "deploy",
        "buildStep": [{"serialNumber": "1", "planScriptUri": ps.json()["uri"]}]})
    assert bp.status == 201, bp
    dp = srv.request("POST", "/rest/deployment-plans", {
        "name": "nic dp", "oeBuildPlanURI": bp.json()["uri"],
        "customAttributes": [{"name": "HostName", "value": "web01"}]})
    assert dp.status == 201, dp
    attrs = {a["name"]: a for a in dp.json()["customAttributes"]}
    assert set(attrs) == {"ManagementNIC", "HostName"}, attrs
    nic = attrs["ManagementNIC"]
    assert nic["type"] == "nic" and nic["value"] is None
    import json
    c = json.loads(nic["constraints"])
    assert c["parameters"] == ["mac", "ipaddress", "vlanid"], c
    # GET -> PUT unchanged works, and keeps the attribute ids.
    cur = srv.request("GET", dp.json()["uri"]).json()
    put = srv.request("PUT", cur["uri"], cur, headers={"If-Match": cur["eTag"]})
    assert put.status == 200, put
    assert [a["id"] for a in put.json()["customAttributes"]] == [a["id"] for a in cur["customAttributes"]]
    # A NIC name the scripts do not use is still refused.
    cur = put.json()
    cur["customAttributes"].append({"name": "OtherNIC", "type": "nic", "value": None})
    bad = srv.request("PUT", cur["uri"], cur, headers={"If-Match": cur["eTag"]})
    assert bad.status == 400 and "OtherNIC" in bad.body, bad


def test_nul_in_path_finds_nothing(srv):
    ps = srv.request("POST", "/rest/plan-scripts", {"name": "p", "planType": "general", "content": "echo"})
    assert ps.status == 201
    uri = ps.json()["uri"]
    assert srv.request("GET", uri).status == 200
    r = srv.request("GET", uri + "%00junk")
    assert r.status == 404 and r.json()["errorCode"] == "RESOURCE_NOT_FOUND", r


def test_collection_cache_follows_every_change(srv):
    """The unfiltered collection body is cached; every write must show at once."""
    def names():
        r = srv.request("GET", "/rest/plan-scripts")
        assert r.status == 200
        return [m["name"] for m in r.json()["members"]]
    assert names() == []
    assert names() == []  # served from the cache
    a = srv.request("POST", "/rest/plan-scripts", {"name": "a", "planType": "general", "content": "echo"}).json()
    assert names() == ["a"]
    b = srv.request("POST", "/rest/plan-scripts", {"name": "b", "planType": "general", "content": "echo"}).json()
    assert names() == ["a", "b"]
    a["name"] = "a2"
    assert srv.request("PUT", a["uri"], a).status == 200
    assert names() == ["a2", "b"]
    assert srv.request("GET", "/rest/plan-scripts?start=0&count=-1").json()["total"] == 2
    assert srv.request("DELETE", b["uri"]).status == 204
    assert names() == ["a2"]
    # Other collections have their own entries.
    assert srv.request("GET", "/rest/build-plans").json()["members"] == []
    bp = srv.request("POST", "/rest/build-plans", {"name": "bp", "oeBuildPlanType": "deploy",
                                                   "buildStep": [{"serialNumber": "1", "planScriptUri": a["uri"]}]})
    assert bp.status == 201
    assert [m["name"] for m in srv.request("GET", "/rest/build-plans").json()["members"]] == ["bp"]
    # dependentArtifacts of the plan script changed with the build plan: visible in the list.
    ps = srv.request("GET", "/rest/plan-scripts").json()["members"][0]
    assert [d["name"] for d in ps["dependentArtifacts"]] == ["bp"]
