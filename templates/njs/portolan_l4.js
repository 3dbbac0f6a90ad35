// Portolan's live peers for TCP/UDP services (nginx's stream module has no Lua in Debian; its
// njs module, libnginx-mod-stream-js, stands in). The controller writes each service's ready
// endpoints to one file under --config-dir ("ip:port [ip]:port ..."), replaced whole on every
// change; each new connection (or UDP session) reads it and takes one peer at random, so an
// endpoint change needs no reload. No file, or no endpoint: no peer, and nginx closes the
// connection.
import fs from 'fs';

function peer(s) {
    var text;
    try {
        text = fs.readFileSync(s.variables.portolan_l4_file, 'utf8');
    } catch (e) {
        return '';
    }
    var peers = text.split(' ').filter(function (p) { return p.length > 0; });
    if (!peers.length) {
        return '';
    }
    return peers[Math.floor(Math.random() * peers.length)];
}

export default { peer };
