// Compares every message, field and enum value declared in wa/proto/wa.proto with the WAProto.proto
// shipped in the pinned @whiskeysockets/baileys package: same full names, field numbers, types
// (resolved to full names for messages and enums), repeated-ness, and enum value numbers.
//   node tests/interop/check_proto.mjs
import protobuf from 'protobufjs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ours = protobuf.loadSync(join(here, '..', '..', 'wa', 'proto', 'wa.proto')).resolveAll();
const theirs = protobuf
  .loadSync(join(here, 'node_modules', '@whiskeysockets', 'baileys', 'WAProto', 'WAProto.proto'))
  .resolveAll();

let passed = 0, failed = 0;
const expect = (ok, what) => { if (ok) passed++; else { failed++; console.error('MISMATCH ' + what); } };
// Fields whose names are C keywords carry a trailing underscore in wa.proto (nanopb cannot rename).
const theirName = (name) => (name.endsWith('_') ? name.slice(0, -1) : name);
const typeName = (f) => (f.resolvedType ? f.resolvedType.fullName : f.type);

function walk(ns) {
  for (const obj of ns.nestedArray || []) {
    const other = theirs.lookup(obj.fullName);
    if (obj instanceof protobuf.Type) {
      expect(other instanceof protobuf.Type, `${obj.fullName} is a message in WAProto.proto`);
      if (!(other instanceof protobuf.Type)) continue;
      for (const f of obj.fieldsArray) {
        const g = other.fields[theirName(f.name)];
        expect(!!g, `${obj.fullName}.${f.name} exists`);
        if (!g) continue;
        expect(g.id === f.id, `${obj.fullName}.${f.name} number ${f.id} != ${g.id}`);
        expect(typeName(g) === typeName(f), `${obj.fullName}.${f.name} type ${typeName(f)} != ${typeName(g)}`);
        expect(g.repeated === f.repeated, `${obj.fullName}.${f.name} repeated`);
      }
      walk(obj);
    } else if (obj instanceof protobuf.Enum) {
      expect(other instanceof protobuf.Enum, `${obj.fullName} is an enum in WAProto.proto`);
      if (!(other instanceof protobuf.Enum)) continue;
      for (const [name, value] of Object.entries(obj.values))
        expect(other.values[name] === value, `${obj.fullName}.${name} = ${value} (theirs ${other.values[name]})`);
    } else if (obj instanceof protobuf.Namespace) {
      walk(obj);
    }
  }
}
walk(ours);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || passed === 0 ? 1 : 0);
