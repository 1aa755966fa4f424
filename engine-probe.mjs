import fs from 'node:fs';
import * as Trace from '@paulirish/trace_engine';
globalThis.DOMRect ??= class { constructor(x=0,y=0,w=0,h=0){Object.assign(this,{x,y,width:w,height:h});} };
const json = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const model = Trace.TraceModel.Model.createWithAllHandlers();
const origErr = console.error; let errs = 0; console.error = (...a) => { errs++; };
await model.parse(json.traceEvents);
console.error = origErr;
const pt = model.parsedTrace();
let neg=0, n=0, maxBy = {};
for (const [pid, p] of pt.data.Renderer.processes) for (const [tid, t] of p.threads) for (const e of t.entries) {
  if (e.dur === undefined) continue; n++; if (e.dur < 0) neg++;
  if (e.ph==='X' && e.cat==='ringtrace.slice') maxBy[e.name] = Math.max(maxBy[e.name]??0, e.dur);
}
const asyncEv = json.traceEvents.filter(e => e.ph==='b'||e.ph==='e');
const pairs = Trace.Helpers.Trace.createMatchedSortedSyntheticEvents(asyncEv.map(e=>({...e})));
const b = asyncEv.filter(e=>e.ph==='b').length, en = asyncEv.filter(e=>e.ph==='e').length;
const trunc = json.traceEvents.filter(e => e.args?.truncated).length;
console.log({errs, n, neg, maxBy, b, e: en, pairs: pairs.length, trunc, nocat: json.traceEvents.filter(e=>!e.cat).length});
