"""ampgate.codec: register maps, words ⇄ values, block read planning. Pure: no I/O, no pymodbus.

```python
rmap = load_map("teltocharge-evc2")
for request in plan_reads(rmap):
    words = ...  # the transport reads request.count registers at request.address
    readings = decode_request(rmap, request, words)
encode_field(rmap, "amps_to_use", 16)  # -> [16]
```
"""

from ampgate.codec.decode import decode_field, decode_request
from ampgate.codec.encode import encode_field
from ampgate.codec.load import list_models, load_map, load_map_file
from ampgate.codec.model import Reading, ReadRequest, RegisterMap
from ampgate.codec.plan import plan_reads
from ampgate.codec.schema import FieldSpec, IdentityCheck, ModelInfo, RegisterMapSpec

__all__ = [
    "FieldSpec",
    "IdentityCheck",
    "ModelInfo",
    "ReadRequest",
    "Reading",
    "RegisterMap",
    "RegisterMapSpec",
    "decode_field",
    "decode_request",
    "encode_field",
    "list_models",
    "load_map",
    "load_map_file",
    "plan_reads",
]
