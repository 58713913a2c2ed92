mod proxy; // end to end over real sockets
mod proxy_support; // recording upstream, scrim from config text, clients, certs, leak checks
