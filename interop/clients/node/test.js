// node-zookeeper-client (npm, 1.1.3) against one ZooKeeper-protocol server.
//
//   node test.js HOST:PORT RESTART_SCRIPT
//
// Each check prints "PASS name" or "FAIL name: why"; the last line is "N passed, M failed".
// RESTART_SCRIPT ("-" to skip) restarts the server in place (same port and data directory).
'use strict';

const zookeeper = require('node-zookeeper-client');
const { execFileSync } = require('child_process');
const crypto = require('crypto');

const { CreateMode, ACL, Id, Permission, Event, Exception, State } = zookeeper;
const server = process.argv[2];
const restartScript = process.argv[3] || '-';
let passed = 0, failed = 0;
const clients = [];

function info(msg) { console.log('  info: ' + msg); }
class Failure extends Error {}
function expect(cond, msg) { if (!cond) throw new Failure(msg); }
function expectEq(want, got, what) {
    const w = JSON.stringify(want), g = JSON.stringify(got);
    if (w !== g) throw new Failure(`${what}: want ${w}, got ${g}`);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function check(name, timeoutMs, body) {
    const t0 = Date.now();
    let why = null, timer;
    try {
        await Promise.race([
            body(),
            new Promise((_, rej) => { timer = setTimeout(() => rej(new Failure(`timed out after ${timeoutMs} ms`)), timeoutMs); }),
        ]);
    } catch (e) {
        why = e instanceof Failure ? e.message : `${e.name}: ${e.message}` + (e.code !== undefined ? ` (code ${e.code})` : '');
    } finally {
        clearTimeout(timer);
    }
    const ms = Date.now() - t0;
    if (why === null) { passed++; console.log(`PASS ${name} (${ms} ms)`); }
    else { failed++; console.log(`FAIL ${name}: ${why.replace(/\n/g, ' ')} (${ms} ms)`); }
}

// Promise wrappers around the callback API; errors carry .code (Exception codes).
function p(client, method, ...args) {
    return new Promise((resolve, reject) => {
        client[method](...args, (err, ...res) => err ? reject(err) : resolve(res));
    });
}
async function codeOf(promise) {
    try { await promise; return 0; } catch (e) { if (typeof e.getCode === 'function') return e.getCode(); throw e; }
}

function connect(connStr, opts = {}) {
    return new Promise((resolve, reject) => {
        const c = zookeeper.createClient(connStr || server, Object.assign({ sessionTimeout: 10000, spinDelay: 200, retries: 0 }, opts));
        const t = setTimeout(() => { c.close(); reject(new Failure('not connected within 10 s')); }, 10000);
        c.states = [];
        c.on('state', s => c.states.push(s.getName()));
        c.once('connected', () => { clearTimeout(t); clients.push(c); resolve(c); });
        c.connect();
    });
}
function nextEvent(register) {
    // register(watcher) must arm a watch; resolves with the first event.
    return new Promise(resolve => register(ev => resolve(ev)));
}
function withTimeout(promise, ms, what) {
    let t;
    return Promise.race([promise, new Promise((_, rej) => { t = setTimeout(() => rej(new Failure(`${what}: nothing within ${ms} ms`)), ms); })])
        .finally(() => clearTimeout(t));
}
// (the client's own removeRecursive only walks one level with the async version npm installs)
async function rmr(c, path) {
    let kids;
    try { [kids] = await p(c, 'getChildren', path); } catch (e) { if (e.getCode && e.getCode() === Exception.NO_NODE) return; throw e; }
    for (const k of kids) await rmr(c, path + '/' + k);
    try { await p(c, 'remove', path, -1); } catch (e) { if (!e.getCode || e.getCode() !== Exception.NO_NODE) throw e; }
}
const buf = s => Buffer.from(s);

async function main() {
    const t0 = Date.now();
    let c;
    await check('connect: session established, negotiated timeout', 15000, async () => {
        c = await connect();
        expect(c.getState() === State.SYNC_CONNECTED, 'state ' + c.getState());
        info(`session id 0x${c.getSessionId().toString('hex')}, timeout ${c.getSessionTimeout()} ms`);
        expectEq(10000, c.getSessionTimeout(), 'negotiated timeout');
    });
    if (!c) return finish(t0);

    await check('connect: session timeout clamped to [2, 20] x tickTime', 20000, async () => {
        const lo = await connect(null, { sessionTimeout: 1000 });
        const hi = await connect(null, { sessionTimeout: 100000 });
        expectEq([4000, 40000], [lo.getSessionTimeout(), hi.getSessionTimeout()], 'timeouts');
        lo.close(); hi.close();
    });

    await check('create: all four modes, sequential names, ephemeral owner', 10000, async () => {
        const [a] = await p(c, 'create', '/nd', buf('root'), CreateMode.PERSISTENT);
        expectEq('/nd', a, 'persistent path');
        const [b] = await p(c, 'create', '/nd/ps-', buf('x'), CreateMode.PERSISTENT_SEQUENTIAL);
        const [e] = await p(c, 'create', '/nd/e', buf('x'), CreateMode.EPHEMERAL);
        const [es] = await p(c, 'create', '/nd/es-', null, CreateMode.EPHEMERAL_SEQUENTIAL);
        expectEq(['/nd/ps-0000000000', '/nd/e', '/nd/es-0000000002'], [b, e, es], 'paths');
        const [st] = await p(c, 'exists', es);
        expectEq(c.getSessionId().toString('hex'), st.ephemeralOwner.toString('hex'), 'ephemeralOwner');
        const [st2] = await p(c, 'exists', b);
        expectEq('0000000000000000', st2.ephemeralOwner.toString('hex'), 'persistent owner');
        expectEq(Exception.NO_CHILDREN_FOR_EPHEMERALS, await codeOf(p(c, 'create', '/nd/e/kid')), 'child of ephemeral');
        expectEq(Exception.NODE_EXISTS, await codeOf(p(c, 'create', '/nd')), 'create existing');
        expectEq(Exception.NO_NODE, await codeOf(p(c, 'create', '/nd-missing/kid')), 'missing parent');
    });
    await check('create: mkdirp and null data', 10000, async () => {
        await p(c, 'mkdirp', '/nd/deep/er/path', buf('leaf'));
        const [data, st] = await p(c, 'getData', '/nd/deep/er/path');
        expectEq('leaf', data.toString(), 'leaf data');
        const [pdata] = await p(c, 'getData', '/nd/deep');
        expectEq('leaf', pdata.toString(), 'mkdirp gives every created node the data');
        await p(c, 'create', '/nd/nulldata');
        const [nd, nst] = await p(c, 'getData', '/nd/nulldata');
        info(`create with no data: getData -> ${JSON.stringify(nd)} dataLength=${nst.dataLength}`);
        expect(!nd || nd.length === 0, 'no data');
        expectEq(0, nst.dataLength, 'dataLength');
    });
    await check('getData/setData/exists: stats and versions', 10000, async () => {
        const [st0] = await p(c, 'exists', '/nd');
        const [st1] = await p(c, 'setData', '/nd', buf('v1'), st0.version);
        expectEq(st0.version + 1, st1.version, 'version');
        expectEq(Exception.BAD_VERSION, await codeOf(p(c, 'setData', '/nd', buf('v2'), st0.version)), 'stale setData');
        const [data, st] = await p(c, 'getData', '/nd');
        expectEq('v1', data.toString(), 'data');
        expectEq(2, st.dataLength, 'dataLength');
        expect(st.mzxid.toString('hex') === st1.mzxid.toString('hex'), 'mzxid');
        const [none] = await p(c, 'exists', '/nd/none');
        expect(none === null || none === undefined, 'exists on missing gives null');
        expectEq(Exception.NO_NODE, await codeOf(p(c, 'getData', '/nd/none')), 'getData missing');
        expectEq(Exception.NOT_EMPTY, await codeOf(p(c, 'remove', '/nd', -1)), 'remove non-empty');
    });
    await check('getChildren: children and stat (getChildren2)', 10000, async () => {
        const [kids, st] = await p(c, 'getChildren', '/nd');
        kids.sort();
        expectEq(['deep', 'e', 'es-0000000002', 'nulldata', 'ps-0000000000'], kids, 'children');
        expectEq(5, st.numChildren, 'numChildren');
        expectEq(5, st.cversion, 'cversion');
        const [rootKids] = await p(c, 'getChildren', '/');
        expect(rootKids.includes('zookeeper'), 'root children ' + rootKids);
        const [zk] = await p(c, 'getChildren', '/zookeeper');
        info(`children of /zookeeper: ${zk.sort()}`);
    });

    await check('watch: getData watcher gets NODE_DATA_CHANGED', 10000, async () => {
        const ev = nextEvent(w => p(c, 'getData', '/nd', w));
        await sleep(50);
        await p(c, 'setData', '/nd', buf('w'), -1);
        const e = await withTimeout(ev, 5000, 'event');
        expectEq([Event.NODE_DATA_CHANGED, '/nd'], [e.getType(), e.getPath()], 'event');
    });
    await check('watch: exists watcher on a missing node gets NODE_CREATED', 10000, async () => {
        const ev = nextEvent(w => p(c, 'exists', '/nw', w));
        await sleep(50);
        await p(c, 'create', '/nw');
        const e = await withTimeout(ev, 5000, 'event');
        expectEq([Event.NODE_CREATED, '/nw'], [e.getType(), e.getPath()], 'event');
    });
    await check('watch: getChildren watcher gets NODE_CHILDREN_CHANGED, then NODE_DELETED', 10000, async () => {
        let ev = nextEvent(w => p(c, 'getChildren', '/nw', w));
        await sleep(50);
        await p(c, 'create', '/nw/k');
        let e = await withTimeout(ev, 5000, 'event');
        expectEq([Event.NODE_CHILDREN_CHANGED, '/nw'], [e.getType(), e.getPath()], 'child event');
        await p(c, 'remove', '/nw/k', -1);
        ev = nextEvent(w => p(c, 'getChildren', '/nw', w));
        await sleep(50);
        await p(c, 'remove', '/nw', -1);
        e = await withTimeout(ev, 5000, 'event');
        expectEq([Event.NODE_DELETED, '/nw'], [e.getType(), e.getPath()], 'delete event');
    });
    await check('watch: data watch and exists watch on the same path from one client', 10000, async () => {
        await p(c, 'create', '/nw2');
        const e1 = nextEvent(w => p(c, 'getData', '/nw2', w));
        const e2 = nextEvent(w => p(c, 'exists', '/nw2', w));
        await sleep(50);
        await p(c, 'remove', '/nw2', -1);
        const got = await withTimeout(Promise.all([e1, e2]), 5000, 'events');
        expectEq([Event.NODE_DELETED, Event.NODE_DELETED], got.map(e => e.getType()), 'events');
    });

    await check('transaction: create/setData/check/remove commit', 10000, async () => {
        const [st] = await p(c, 'exists', '/nd');
        const tx = c.transaction()
            .create('/nd/tx', buf('t'))
            .create('/nd/txs-', null, CreateMode.PERSISTENT_SEQUENTIAL)
            .setData('/nd/tx', buf('u'), 0 /* the client turns 0 into -1 */)
            .check('/nd', st.version)
            .remove('/nd/tx', -1);
        const [results] = await p(tx, 'commit');
        expectEq(5, results.length, 'results');
        expectEq([1, 1, 5, 13, 2], results.map(r => r.type), 'result types');
        expectEq('/nd/tx', results[0].path, 'create path');
        expectEq('/nd/txs-0000000006', results[1].path, 'sequential path (cversion 6)');
        expectEq(1, results[2].stat.version, 'setData stat');
    });
    await check('transaction: failing op rolls back, per-op error results', 10000, async () => {
        let err = null, results = null;
        await new Promise(r => c.transaction().create('/nd/tx2').check('/nd', 4242).setData('/nd', buf('no'))
            .commit((e, res) => { err = e; results = res; r(); }));
        expect(err && err.getCode() === Exception.BAD_VERSION, 'error ' + err);
        expectEq([[-1, 0], [-1, -103], [-1, -2]], results.map(r => [r.type, r.err]), 'results');
        const [none] = await p(c, 'exists', '/nd/tx2');
        expect(!none, 'rolled back');
    });
    await check('transaction: check on a missing node', 10000, async () => {
        let err = null;
        await new Promise(r => c.transaction().check('/nd/absent', 3).commit(e => { err = e; r(); }));
        expect(err && err.getCode() === Exception.NO_NODE, 'error ' + err);
    });

    await check('acl: digest auth, ACLs, getACL/setACL, NO_AUTH', 15000, async () => {
        const a = await connect();
        a.addAuthInfo('digest', buf('carol:pw'));
        const digest = crypto.createHash('sha1').update('carol:pw').digest('base64');
        const dacl = [new ACL(Permission.ALL, new Id('digest', 'carol:' + digest))];
        await p(a, 'create', '/nacl', buf('s'), dacl);
        expectEq(Exception.NO_AUTH, await codeOf(p(c, 'getData', '/nacl')), 'read without auth');
        const [data] = await p(a, 'getData', '/nacl');
        expectEq('s', data.toString(), 'read with auth');
        const [acls, st] = await p(a, 'getACL', '/nacl');
        expectEq([{ perms: 31, scheme: 'digest', id: 'carol:' + digest }],
            acls.map(x => ({ perms: x.permission, scheme: x.id.scheme, id: x.id.id })), 'getACL');
        await p(a, 'setACL', '/nacl', ACL.READ_ACL_UNSAFE, st.aversion);
        const [data2] = await p(c, 'getData', '/nacl');
        expectEq('s', data2.toString(), 'world-readable');
        expectEq(Exception.NO_AUTH, await codeOf(p(c, 'setData', '/nacl', buf('x'), -1)), 'write refused');
        await p(a, 'create', '/nacl2', null, ACL.CREATOR_ALL_ACL);
        const [acl2] = await p(a, 'getACL', '/nacl2');
        expectEq('digest:carol:' + digest, acl2[0].id.scheme + ':' + acl2[0].id.id, 'creator ACL');
        expectEq(Exception.INVALID_ACL, await codeOf(p(c, 'create', '/nacl3', null, ACL.CREATOR_ALL_ACL)), 'auth ACL without auth');
        await p(a, 'remove', '/nacl2', -1);
        await p(a, 'remove', '/nacl', -1);
        a.close();
    });
    await check('acl: exists() on a node without READ permission for the caller', 15000, async () => {
        await p(c, 'create', '/nnoread', buf('x'), [new ACL(Permission.WRITE | Permission.DELETE, Id.ANYONE_ID_UNSAFE || new Id('world', 'anyone'))]);
        let res;
        try { const [st] = await p(c, 'exists', '/nnoread'); res = st ? `stat version ${st.version}` : 'null'; }
        catch (e) { res = e.name || String(e); }
        info('exists() without READ -> ' + res);
        await p(c, 'remove', '/nnoread', -1);
        // exists() checks READ since 3.9 (ZOOKEEPER-2590), which ferrozk follows; 3.8.0 gives the Stat.
        const v39 = process.env.CLIENTS_BACKEND !== 'zookeeper';
        expectEq(v39 ? 'NO_AUTH' : 'stat version 0', res, v39 ? 'exists result (3.9)' : 'exists result (ZooKeeper 3.8)');
    });
    await check('auth: addAuthInfo before connect is sent with the connect (xid -4 reply)', 15000, async () => {
        const a = zookeeper.createClient(server, { sessionTimeout: 10000, retries: 0 });
        a.addAuthInfo('digest', buf('dave:pw'));
        await new Promise((res, rej) => { a.once('connected', res); setTimeout(() => rej(new Failure('no connect')), 10000); a.connect(); });
        clients.push(a);
        await p(a, 'create', '/nauth', null, ACL.CREATOR_ALL_ACL);
        const [acl] = await p(a, 'getACL', '/nauth');
        expect(acl[0].id.id.startsWith('dave:'), 'acl ' + acl[0].id.id);
        await p(a, 'remove', '/nauth', -1);
        a.close();
    });
    await check('auth: unknown scheme -> AUTH_FAILED state', 15000, async () => {
        const a = await connect();
        const st = new Promise(res => a.on('state', s => { if (s === State.AUTH_FAILED) res(s); }));
        a.addAuthInfo('nosuchscheme', buf('x'));
        await withTimeout(st, 5000, 'AUTH_FAILED state');
        info('states: ' + a.states.join(','));
        a.close();
    });

    await check('chroot: connect string with /chroot; paths and events are relative', 15000, async () => {
        await p(c, 'mkdirp', '/chroot/app');
        const a = await connect(server + '/chroot/app');
        await p(a, 'create', '/x', buf('1'));
        const [st] = await p(c, 'exists', '/chroot/app/x');
        expect(st, 'created under the chroot');
        const ev = nextEvent(w => p(a, 'getData', '/x', w));
        await sleep(50);
        await p(c, 'setData', '/chroot/app/x', buf('2'), -1);
        const e = await withTimeout(ev, 5000, 'event');
        expectEq([Event.NODE_DATA_CHANGED, '/x'], [e.getType(), e.getPath()], 'event in chroot');
        const [path] = await p(a, 'create', '/s-', null, CreateMode.PERSISTENT_SEQUENTIAL);
        expectEq('/s-0000000001', path, 'sequential path in chroot');
        const [res] = await p(a.transaction().create('/t').setData('/x', buf('3')), 'commit');
        expectEq('/t', res[0].path, 'transaction create path in chroot');
        a.close();
        await rmr(c, '/chroot');
    });

    await check('session: ephemeral removed and watcher fired when its client closes', 15000, async () => {
        const a = await connect();
        await p(a, 'create', '/neph', null, CreateMode.EPHEMERAL);
        const ev = nextEvent(w => p(c, 'exists', '/neph', w));
        await sleep(50);
        a.close();
        const e = await withTimeout(ev, 5000, 'event');
        expectEq(Event.NODE_DELETED, e.getType(), 'event');
    });
    await check('session: idle 4 s session kept alive by pings for 6 s', 15000, async () => {
        const a = await connect(null, { sessionTimeout: 4000 });
        await p(a, 'create', '/nidle', null, CreateMode.EPHEMERAL);
        await sleep(6000);
        const [st] = await p(c, 'exists', '/nidle');
        expect(st, 'ephemeral gone');
        expectEq(['SYNC_CONNECTED'], a.states, 'states');
        a.close();
    });
    await check('pipelining: 600 mixed requests in flight on one connection, replies in order', 30000, async () => {
        await p(c, 'create', '/npipe');
        const ops = [];
        for (let i = 0; i < 150; i++) {
            const path = `/npipe/n${i}`;
            ops.push(p(c, 'create', path, buf('a' + i)).then(([x]) => x === path || `create ${x}`));
            ops.push(p(c, 'getData', path).then(([d]) => d.toString() === 'a' + i || `getData ${d}`));
            ops.push(p(c, 'setData', path, buf('b' + i), 0).then(([st]) => st.version === 1 || `setData v${st.version}`));
            ops.push(p(c, 'exists', path).then(([st]) => (st && st.version === 1) || `exists ${st && st.version}`));
        }
        const res = await Promise.all(ops.map(o => o.catch(e => 'error ' + e)));
        const bad = res.filter(r => r !== true);
        if (bad.length) {
            const kinds = {};
            for (const b of bad) { const k = String(b).replace(/[0-9]+/g, 'N'); kinds[k] = (kinds[k] || 0) + 1; }
            info('pipelining bad results by kind: ' + JSON.stringify(kinds));
        }
        expect(bad.length === 0, `${bad.length} bad results, first: ${bad[0]}`);
        const [kids, st] = await p(c, 'getChildren', '/npipe');
        expectEq(150, kids.length, 'children');
        expectEq(['SYNC_CONNECTED'], c.states.filter(s => s !== 'SYNC_CONNECTED').length ? c.states : ['SYNC_CONNECTED'], 'no reconnects');
        await rmr(c, '/npipe');
    });
    await check('pipelining: getData(watcher) between two setData calls issued back to back', 30000, async () => {
        // Typical Node style: fire calls without awaiting. The read must return the first
        // write's data and its watcher must fire for the second write.
        let future = 0, missed = 0;
        const rounds = 20;
        for (let i = 0; i < rounds; i++) {
            const path = `/npw${i}`;
            await p(c, 'create', path, buf('old'));
            let fired = false;
            const w1 = p(c, 'setData', path, buf('mid'), -1);
            const r = p(c, 'getData', path, () => { fired = true; });
            const w2 = p(c, 'setData', path, buf('new'), -1);
            const [[d]] = await Promise.all([r, w1, w2]);
            await sleep(100);
            if (d.toString() === 'new') future++;
            if (!fired) missed++;
            await p(c, 'remove', path, -1);
        }
        info(`${rounds} rounds: getData returned the later write's data ${future}x; watcher never called ${missed}x`);
        expectEq([0, 0], [future, missed], '[reads that saw the later write, watchers never called]');
    });
    await check('getChildren: 4000 children with 100-byte names in one reply', 60000, async () => {
        await p(c, 'create', '/nmany');
        const pad = 'x'.repeat(95);
        const ops = [];
        for (let i = 0; i < 4000; i++) ops.push(p(c, 'create', `/nmany/${pad}${String(i).padStart(5, '0')}`));
        await Promise.all(ops);
        const [kids, st] = await p(c, 'getChildren', '/nmany');
        expectEq(4000, kids.length, 'children');
        expectEq(4000, st.numChildren, 'numChildren');
        const del = kids.map(k => p(c, 'remove', `/nmany/${k}`, -1));
        await Promise.all(del);
        await p(c, 'remove', '/nmany', -1);
    });
    await check('data: 1 MB - 1 KB value round trip', 15000, async () => {
        const big = Buffer.alloc(1024 * 1023, 0x61);
        await p(c, 'create', '/nbig', big);
        const [d] = await p(c, 'getData', '/nbig');
        expectEq(big.length, d.length, 'length');
        await p(c, 'remove', '/nbig', -1);
    });
    await check('remove a subtree', 10000, async () => {
        await rmr(c, '/nd');
        const [st] = await p(c, 'exists', '/nd');
        expect(!st, 'removed');
    });

    if (restartScript !== '-') {
        await check('restart: reconnect with same session; setWatches replays a missed change', 60000, async () => {
            const a = await connect(null, { sessionTimeout: 20000, spinDelay: 500 });
            a.addAuthInfo('digest', buf('erin:pw'));
            await p(a, 'create', '/nr', buf('0'));
            await p(a, 'create', '/nreph', null, CreateMode.EPHEMERAL);
            await p(a, 'create', '/nrauth', null, ACL.CREATOR_ALL_ACL);
            const sid = a.getSessionId().toString('hex');
            const ev = nextEvent(w => p(a, 'getData', '/nr', w));
            await sleep(100);
            const states = [];
            a.on('state', s => states.push(s.getName()));
            // Stop the server, change nothing, start it again; then change the node once the
            // watching client is back: the watch must have been re-registered.
            execFileSync('bash', [restartScript], { stdio: 'inherit' });
            const deadline = Date.now() + 20000;
            while (!states.includes('SYNC_CONNECTED') && Date.now() < deadline) await sleep(100);
            expect(states.includes('SYNC_CONNECTED'), 'states ' + states);
            expectEq(sid, a.getSessionId().toString('hex'), 'same session');
            await sleep(300);
            await p(c, 'setData', '/nr', buf('1'), -1);
            const e = await withTimeout(ev, 5000, 'watch after restart');
            expectEq(Event.NODE_DATA_CHANGED, e.getType(), 'event');
            const [st] = await p(c, 'exists', '/nreph');
            expect(st, 'ephemeral lost');
            // re-sent auth still works after the reconnect
            await p(a, 'setData', '/nrauth', buf('ok'), -1);
            await p(a, 'remove', '/nrauth', -1);
            await p(a, 'remove', '/nr', -1);
            a.close();
        });
    }
    finish(t0);
}

function finish(t0) {
    for (const x of clients) { try { x.close(); } catch (e) { /* ignore */ } }
    console.log(`node checks took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`${passed} passed, ${failed} failed`);
    setTimeout(() => process.exit(failed === 0 && passed > 0 ? 0 : 1), 200);
}

main().catch(e => { console.log('FAIL harness: ' + (e && e.stack)); failed++; finish(Date.now()); });
