// Leaflet, made global before Leaflet-Geoman loads (it extends the global L).
import L from 'leaflet';

window.L = L;
export default L;
