#!/usr/bin/python3
"""Write the seed corpus of fuzz_bundle (tests/fuzz/corpus/fuzz_bundle):
small synthetic artifact bundles in HPE's layout (plan script, build plan,
deployment plan, golden image JSON + a tiny payload, MANIFEST.MF, checksum
file), deflated and stored, SHA256SUM and SHA1SUM. Our own data: the HPE
corpus is never copied into the repository."""
import hashlib
import io
import json
import os
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PS = "11111111-2222-3333-4444-555555555555"
BP = "22222222-2222-3333-4444-555555555555"
DP = "33333333-2222-3333-4444-555555555555"
GI = "44444444-2222-3333-4444-555555555555"
MF = ("Artifact Name:Seed\nDescription:a \\\"seed\\\"\\nbundle\nRead Only:true\n"
      "Time Stamp:2021-01-01T00:00:00.000Z\nArtifact Type:USER")


def members(with_gi):
    ps = {"type": "PlanScript", "uri": None, "id": PS, "name": "Seed PS", "description": "",
          "planType": "deploy", "content": "echo @Host:x@\n", "customAttributes": None,
          "hpProvided": False}
    bp = {"type": "OeBuildPlan", "buildPlanid": BP, "name": "Seed BP", "oeBuildPlanType": "deploy",
          "buildStep": [{"serialNumber": "1", "planScriptUri": "/rest/plan-scripts/" + PS,
                         "planScriptName": "Seed PS", "parameters": None}],
          "customAttributes": [{"name": "Host", "value": "x", "type": "string",
                                "constraints": "{}", "description": ""}]}
    dp = {"type": "OEDeploymentPlan", "id": DP, "name": "Seed DP", "oeBuildPlanURI": "Seed BP",
          "goldenImageURI": "Seed GI" if with_gi else None, "customAttributes": []}
    out = [(PS + "_planscript.json", json.dumps(ps).encode())]
    if with_gi:
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(GI, b"\0" * 1024)
        gi = {"type": "GoldenImage", "id": GI, "name": "Seed GI", "size": 0, "readOnly": True}
        out += [(GI + "_goldenimage.json", json.dumps(gi).encode()), ("Seed GI", inner.getvalue())]
    out += [(BP + "_buildplan.json", json.dumps(bp).encode()),
            (DP + "_deploymentplan.json", json.dumps(dp).encode()),
            ("MANIFEST.MF", MF.encode())]
    return out


def bundle(with_gi, method, algo):
    m = members(with_gi)
    h, name = (hashlib.sha256, "SHA256SUM.sha256sum") if algo == 256 else (hashlib.sha1, "SHA1SUM.sha1sum")
    sums = "".join("%s\t%s\n" % (n, h(d).hexdigest()) for n, d in m)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, d in m + [(name, sums.encode())]:
            z.writestr(n, d)
    return buf.getvalue()


def main():
    d = os.path.join(HERE, "corpus", "fuzz_bundle")
    os.makedirs(d, exist_ok=True)
    seeds = {"deflate-sha256": bundle(False, zipfile.ZIP_DEFLATED, 256),
             "stored-sha1": bundle(False, zipfile.ZIP_STORED, 1),
             "golden-image": bundle(True, zipfile.ZIP_DEFLATED, 256)}
    for k, v in seeds.items():
        with open(os.path.join(d, "seed-" + k), "wb") as f:
            f.write(v)


if __name__ == "__main__":
    main()
